"""Every staff page answers the same way: sign in first, then 403 for a learner."""

from __future__ import annotations

from django.urls import reverse

from tests.base import BaseTestCase

STAFF_PAGES = [
    "training:models",
    "training:fine-tune",
    "training:dataset-upload",
    "training:adapters",
    "runs:list",
    "runs:new",
]


class StaffPagesTestCase(BaseTestCase):
    def test_it_sends_signed_out_visitors_to_the_login_page(self):
        for name in STAFF_PAGES:
            response = self.client.get(reverse(name))
            self.assertEqual(response.status_code, 302, name)
            self.assertTrue(response["Location"].startswith(reverse("login")), (name, response["Location"]))

    def test_it_refuses_learners_with_403(self):
        self.client.force_login(self.bob)
        for name in STAFF_PAGES:
            self.assertEqual(self.client.get(reverse(name)).status_code, 403, name)

    def test_a_learner_gets_the_same_403_page_from_the_admin_as_from_every_staff_page(self):
        self.client.force_login(self.bob)
        for url in (reverse("admin:index"), reverse("training:models")):
            response = self.client.get(url, follow=True)
            self.assertContains(response, "This page is for staff.", status_code=403)
            self.assertContains(response, "You are signed in as <strong>bob</strong>", status_code=403)

    def test_it_shows_them_to_staff(self):
        self.client.force_login(self.alice)
        for name in STAFF_PAGES:
            self.assertEqual(self.client.get(reverse(name)).status_code, 200, name)

    def test_the_menu_shows_learners_only_what_they_can_use(self):
        self.client.force_login(self.bob)
        page = self.client.get(reverse("learn:courses"))
        self.assertContains(page, f'href="{reverse("learn:courses")}"')
        for name in ("training:jobs", *STAFF_PAGES[:1], "runs:list"):
            self.assertNotContains(page, f'href="{reverse(name)}"')
        self.client.force_login(self.alice)
        page = self.client.get(reverse("learn:courses"))
        for name in ("training:jobs", "training:models", "runs:list"):
            self.assertContains(page, f'href="{reverse(name)}"')
