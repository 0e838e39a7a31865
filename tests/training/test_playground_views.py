"""The Playground page: staff only, the adapters it offers, the settings it shows."""

from __future__ import annotations

import tempfile

from django.urls import reverse

from tests.base import BaseTestCase
from training.models import Adapter, LanguageModel


class PlaygroundPageTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.folder = self.enterContext(tempfile.TemporaryDirectory())
        self.model = LanguageModel.objects.create(
            name="smol", is_student=True, source="/m", max_new_tokens=77, temperature=0.7, top_p=0.9
        )
        self.adapter = Adapter.objects.create(
            base_model=self.model, version=1, path=self.folder, method="sft"
        )
        self.gone = Adapter.objects.create(base_model=self.model, version=2, path="/nowhere/v2", method="sft")
        other = LanguageModel.objects.create(name="other", is_student=True, source="/o")
        self.foreign = Adapter.objects.create(base_model=other, version=1, path=self.folder, method="dpo")
        self.url = reverse("training:playground", args=[self.model.pk])

    def test_it_shows_the_prompt_the_adapters_and_the_settings_to_staff(self):
        self.client.force_login(self.alice)
        response = self.client.get(self.url)
        self.assertContains(response, f'ws-connect="/ws/training/models/{self.model.pk}/playground/"')
        self.assertContains(response, 'name="prompt"')
        self.assertContains(response, f'name="adapter" value="{self.adapter.pk}"')
        self.assertNotContains(response, f'value="{self.gone.pk}"')  # its folder is gone
        self.assertNotContains(response, f'value="{self.foreign.pk}"')  # another model's
        self.assertContains(response, "1 adapter of this model is not listed: its folder is gone.")
        self.assertContains(response, "<dt>max new tokens</dt><dd>77</dd>", html=True)
        self.assertContains(response, "<dt>temperature</dt><dd>0.7</dd>", html=True)
        self.assertContains(response, "<dt>top_p</dt><dd>0.9</dd>", html=True)
        self.assertContains(response, reverse("admin:training_languagemodel_change", args=[self.model.pk]))

    def test_it_says_why_a_model_served_over_http_has_no_adapters(self):
        served = LanguageModel.objects.create(
            name="served", is_teacher=True, backend="openai", source="m", base_url="http://gpu:8001/v1"
        )
        Adapter.objects.create(base_model=served, version=1, path=self.folder, method="sft")
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:playground", args=[served.pk]))
        self.assertContains(response, "is served over HTTP")
        self.assertNotContains(response, 'name="adapter"')

    def test_it_links_each_local_model_from_the_models_page(self):
        served = LanguageModel.objects.create(
            name="served", is_teacher=True, backend="openai", source="m", base_url="http://gpu:8001/v1"
        )
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:models"))
        self.assertContains(response, f'href="{self.url}"')
        self.assertNotContains(response, f'href="{reverse("training:playground", args=[served.pk])}"')

    def test_it_sends_signed_out_visitors_to_the_login_page(self):
        response = self.client.get(self.url)
        self.assertEqual(response.status_code, 302)
        self.assertTrue(response["Location"].startswith(reverse("login")))

    def test_it_refuses_learners_with_the_staff_page(self):
        self.client.force_login(self.bob)
        response = self.client.get(self.url)
        self.assertContains(response, "This page is for staff.", status_code=403)

    def test_it_404s_for_a_disabled_model(self):
        self.model.enabled = False
        self.model.save()
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get(self.url).status_code, 404)
