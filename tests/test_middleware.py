"""Under ASGI a request's middleware runs as one synchronous chain (teachloop/middleware.py)."""

from __future__ import annotations

from unittest import mock

from asgiref.sync import SyncToAsync, async_to_sync
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import AsyncClient, TestCase, override_settings


class SyncChainTests(TestCase):
    def setUp(self):
        self.user = get_user_model().objects.create_user("learner", password="pw-123456789")

    def hops(self) -> int:
        """Thread hops (sync_to_async calls) of one signed-in page request through the ASGI handler."""
        created = []
        original = SyncToAsync.__init__

        def counting(instance, func, *args, **kwargs):
            created.append(getattr(func, "__qualname__", repr(func)))
            original(instance, func, *args, **kwargs)

        client = AsyncClient()  # a new handler: it loads the middleware as the settings are now
        client.force_login(self.user)
        with mock.patch.object(SyncToAsync, "__init__", counting):
            response = async_to_sync(client.get)("/learn/")
        self.assertEqual(response.status_code, 200)
        return len(created)

    def test_a_page_crosses_into_a_thread_a_few_times_not_once_per_middleware_hook(self):
        with_chain = self.hops()
        without = [m for m in settings.MIDDLEWARE if m != "teachloop.middleware.SyncChain"]
        with override_settings(MIDDLEWARE=without):
            async_mode = self.hops()
        self.assertLessEqual(with_chain, 5, f"{with_chain} hops with the sync chain, {async_mode} without")
        self.assertGreater(async_mode, with_chain + 5)  # so the count would notice the chain going async

    def test_sync_chain_is_the_innermost_middleware(self):
        self.assertEqual(settings.MIDDLEWARE[-1], "teachloop.middleware.SyncChain")
