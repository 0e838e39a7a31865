"""Container healthcheck: GET /healthz from this container's daphne, as the TLS proxy would.

Exit 0 when it answers 200 (the database answered too), 1 otherwise. The request names the first
host in ALLOWED_HOSTS and says it came over HTTPS (X-Forwarded-Proto, which the production
settings trust): a plain request to 127.0.0.1 would be refused as a disallowed host, or
redirected to https:// by SECURE_SSL_REDIRECT, on a perfectly healthy server.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def probe_host() -> str:
    for host in os.environ.get("ALLOWED_HOSTS", "").split(","):
        host = host.strip()
        if host and host != "*":
            return host.lstrip(".")  # ".example.com" allows example.com itself
    return "localhost"  # nothing set: DEBUG's defaults, or "*"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect is an answer, and not "healthy"
        return None


def main() -> int:
    port = os.environ.get("TEACHLOOP_PORT", "8000")
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/healthz", headers={"Host": probe_host(), "X-Forwarded-Proto": "https"}
    )
    try:
        with urllib.request.build_opener(_NoRedirect).open(request, timeout=8) as response:
            if response.status == 200:
                return 0
            print(f"/healthz answered {response.status}", file=sys.stderr)
    except (urllib.error.URLError, OSError) as exc:  # HTTPError (4xx/5xx/3xx) is a URLError
        print(f"/healthz failed: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
