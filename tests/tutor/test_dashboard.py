from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from tests.base import PASSWORD, BaseTestCase
from training.models import LanguageModel


class DashboardTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        LanguageModel.objects.create(
            name="smol",
            is_teacher=True,
            is_student=True,
            is_default_teacher=True,
            source="x",
            last_try_output="<script>alert('hi')</script>",
        )

    def test_it_sends_anonymous_visitors_to_sign_in(self):
        response = self.client.get(reverse("dashboard"))
        self.assertRedirects(response, f"{reverse('login')}?next=/")

    def test_it_signs_in_and_shows_the_dashboard(self):
        response = self.client.post(
            reverse("login"), {"username": "alice", "password": PASSWORD}, follow=True
        )
        self.assertContains(response, "Welcome, alice")
        self.assertContains(response, "smol")

    def test_it_rejects_a_wrong_password(self):
        response = self.client.post(reverse("login"), {"username": "alice", "password": "nope"})
        self.assertContains(response, "didn't match")

    def test_it_escapes_model_output(self):
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        self.assertNotContains(response, "<script>alert")
        self.assertContains(response, "&lt;script&gt;alert")

    def test_it_shows_learners_no_model_management(self):
        self.client.force_login(self.bob)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(response, "Your learning")
        self.assertNotContains(response, "Registered models")
        self.assertNotContains(response, reverse("admin:index"))

    def test_it_keeps_the_models_page_for_staff(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(reverse("training:models")).status_code, 403)
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:models"))
        self.assertContains(response, 'ws-connect="/ws/training/models/')

    def test_it_reads_the_models_once_and_shows_only_enabled_defaults(self):
        LanguageModel.objects.create(
            name="off", is_student=True, is_default_student=True, source="x", enabled=False
        )
        for user in (self.alice, self.bob):  # staff (every model listed) and a learner
            self.client.force_login(user)
            with CaptureQueriesContext(connection) as queries:
                response = self.client.get(reverse("dashboard"))
            reads = [q["sql"] for q in queries if "training_languagemodel" in q["sql"]]
            self.assertEqual(len(reads), 1, reads)
            self.assertEqual(response.context["default_teacher"].name, "smol")
            self.assertIsNone(response.context["default_student"])  # a disabled default is no default
            self.assertContains(response, "none yet")

    def test_it_reports_health(self):
        response = self.client.get(reverse("healthz"))
        self.assertEqual(response.json(), {"status": "ok"})

    def test_it_serves_vendored_htmx(self):
        self.client.force_login(self.alice)
        response = self.client.get(reverse("dashboard"))
        self.assertContains(response, "vendor/htmx-2.0.11.min.js")
        self.assertNotContains(response, "unpkg.com")
