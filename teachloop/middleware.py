"""One synchronous middleware chain under ASGI.

- :class:`SyncChain`, the innermost middleware, can only run synchronously. Django builds the chain
  from the inside out and keeps every middleware above a synchronous one synchronous too, so a request
  crosses from the server's event loop to a thread once for the whole chain and once for the view.
  Without it, every ``MiddlewareMixin`` (sessions, CSRF, auth, messages ...) runs in async mode, which
  hops to a thread and back for each of its hooks: about a dozen hops a request.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class SyncChain:
    """Passes the request on; its only job is to be synchronous-only (see the module docstring)."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)
