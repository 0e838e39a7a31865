"""Login throttling with django-axes: a username is locked out of web sign-ins from an address after
``AXES_FAILURE_LIMIT`` failures in a row, for ``AXES_COOLOFF_TIME``; the person sees a page saying
so and when to try again (HTTP 429). A successful sign-in resets the count."""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check for sign-ins from a web request. ``authenticate()`` without a
    request (a script, the test client's ``login``) is not a web sign-in: it passes through to the
    next backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)
