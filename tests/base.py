"""Base test case with one named user per role (healthchecks style)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.test import TestCase

PASSWORD = "correct horse battery staple"


class BaseTestCase(TestCase):
    def setUp(self) -> None:
        super().setUp()
        User = get_user_model()
        # Alice is an instructor / ML engineer (staff), Bob a learner.
        self.alice = User.objects.create_user(
            "alice", "alice@example.org", PASSWORD, is_staff=True, is_superuser=True
        )
        self.bob = User.objects.create_user("bob", "bob@example.org", PASSWORD)
