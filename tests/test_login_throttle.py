"""Sign-in throttling: a username guessed at too often is paused, with a page that says so."""

from __future__ import annotations

from datetime import timedelta

from axes.models import AccessAttempt
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from tests.base import PASSWORD, BaseTestCase


@override_settings(AXES_FAILURE_LIMIT=3)
class LoginThrottleTestCase(BaseTestCase):
    def sign_in(self, username: str, password: str):
        return self.client.post(reverse("login"), {"username": username, "password": password})

    def test_a_guessed_username_is_paused_with_a_page_that_says_so_then_freed(self):
        for _ in range(2):
            self.assertContains(self.sign_in("bob", "guess"), "didn't match", status_code=200)
        locked = self.sign_in("bob", "guess")  # the third failure in a row
        self.assertContains(locked, "Too many sign-in attempts", status_code=429)
        self.assertContains(self.sign_in("bob", PASSWORD), "signing in is paused", status_code=429)
        self.assertNotIn("_auth_user_id", self.client.session)
        self.assertRedirects(self.sign_in("alice", PASSWORD), reverse("dashboard"))  # others sign in
        self.client.logout()

        AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(hours=1))  # cool-off over
        self.assertRedirects(self.sign_in("bob", PASSWORD), reverse("dashboard"))

    def test_a_successful_sign_in_starts_the_count_again(self):
        for _ in range(2):
            self.sign_in("bob", "guess")
        self.assertRedirects(self.sign_in("bob", PASSWORD), reverse("dashboard"))
        self.client.logout()
        for _ in range(2):
            self.assertEqual(self.sign_in("bob", "guess").status_code, 200)
        self.assertRedirects(self.sign_in("bob", PASSWORD), reverse("dashboard"))

    def test_the_admin_sign_in_is_throttled_too(self):
        for _ in range(3):
            response = self.client.post(reverse("admin:login"), {"username": "alice", "password": "guess"})
        self.assertEqual(response.status_code, 429)

    def test_the_sign_in_page_offers_sign_up_only_where_it_is_open(self):
        with self.settings(TEACHLOOP_OPEN_SIGNUP=True):
            self.assertContains(self.client.get(reverse("login")), reverse("learn:signup"))
        with self.settings(TEACHLOOP_OPEN_SIGNUP=False):
            self.assertNotContains(self.client.get(reverse("login")), reverse("learn:signup"))
