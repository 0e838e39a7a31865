"""Site-wide error pages that must work when nothing else does."""

from __future__ import annotations

import sys

from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string

from training.recovery import DATABASE_UNAVAILABLE

RETRY_AFTER_S = 5


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's ``handler500``: the database out of reach (restarting, connections dropped) is a 503
    saying so, with ``Retry-After``; anything else the plain 500 page. Rendered without a request
    context: the page must not need the database it may be reporting missing."""
    unavailable = isinstance(sys.exc_info()[1], DATABASE_UNAVAILABLE)
    html = render_to_string("500.html", {"unavailable": unavailable, "retry_after": RETRY_AFTER_S})
    response = HttpResponse(html, status=503 if unavailable else 500)
    if unavailable:
        response["Retry-After"] = str(RETRY_AFTER_S)
    return response
