"""Registering language models and trying them from the Django admin."""

from __future__ import annotations

import time

import pytest
from django.urls import reverse

from tests.base import BaseTestCase
from training.models import LanguageModel

ADD_URL = reverse("admin:training_languagemodel_add")
CHANGELIST_URL = reverse("admin:training_languagemodel_changelist")


def form_data(**overrides: object) -> dict[str, object]:
    data = {
        "name": "tiny",
        "is_teacher": "on",
        "backend": "transformers",
        "source": "org/model",
        "base_url": "",
        "api_key_env": "",
        "chat_template": "",
        "temperature": "0",
        "top_p": "1",
        "max_new_tokens": "32",
        "token_limit_field": "max_tokens",  # the admin form's defaults
        "send_sampling": "on",
        "enabled": "on",
    }
    data.update(overrides)
    return {k: v for k, v in data.items() if v is not None}


class RegisterModelTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)

    def test_it_registers_an_openai_compatible_teacher(self):
        response = self.client.post(
            ADD_URL,
            form_data(
                name="big-teacher",
                backend="openai",
                source="Qwen/Qwen2.5-72B-Instruct",
                base_url="http://gpu-box:8001/v1",
                api_key_env="VLLM_API_KEY",
                temperature="0.7",
                top_p="0.9",
            ),
        )
        self.assertRedirects(response, CHANGELIST_URL)
        model = LanguageModel.objects.get(name="big-teacher")
        spec = model.to_spec()
        self.assertEqual(
            (spec.backend, spec.base_url, spec.api_key_env),
            ("openai", "http://gpu-box:8001/v1", "VLLM_API_KEY"),
        )
        self.assertEqual(
            (spec.defaults.temperature, spec.defaults.top_p, spec.defaults.max_new_tokens), (0.7, 0.9, 32)
        )

    def test_it_requires_a_base_url_for_openai_models(self):
        response = self.client.post(ADD_URL, form_data(backend="openai", source="m"))
        self.assertContains(response, "needs the server&#x27;s base URL")
        self.assertFalse(LanguageModel.objects.exists())

    def test_it_requires_a_gguf_file_for_gguf_models(self):
        response = self.client.post(ADD_URL, form_data(backend="gguf", source="/models/model.bin"))
        self.assertContains(response, "path to its .gguf file")

    def test_it_requires_a_role(self):
        response = self.client.post(ADD_URL, form_data(is_teacher=None))
        self.assertContains(response, "at least one role")

    def test_it_rejects_an_api_key_in_place_of_its_variable_name(self):
        response = self.client.post(
            ADD_URL, form_data(backend="openai", base_url="http://x:1/v1", api_key_env="sk-abc123-secret")
        )
        self.assertContains(response, "Use a variable name")

    def test_it_keeps_one_default_teacher(self):
        first = LanguageModel.objects.create(name="a", is_teacher=True, is_default_teacher=True, source="a")
        second = LanguageModel.objects.create(name="b", is_teacher=True, source="b")
        self.client.post(CHANGELIST_URL, {"action": "make_default_teacher", "_selected_action": [second.pk]})
        first.refresh_from_db()
        second.refresh_from_db()
        self.assertFalse(first.is_default_teacher)
        self.assertTrue(second.is_default_teacher)

    def test_it_hides_the_admin_from_learners(self):
        self.client.force_login(self.bob)
        response = self.client.get(CHANGELIST_URL)
        self.assertEqual(response.status_code, 302)
        self.assertIn("/admin/login/", response["Location"])


class TryModelTestCase(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _tiny(self, tiny_model_dir):
        self.tiny_dir = tiny_model_dir

    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)

    def try_it(self, model: LanguageModel):
        return self.client.post(
            CHANGELIST_URL, {"action": "try_it", "_selected_action": [model.pk]}, follow=True
        )

    def test_it_shows_the_generated_text(self):
        model = LanguageModel.objects.create(
            name="tiny", is_student=True, source=str(self.tiny_dir), max_new_tokens=8
        )
        response = self.try_it(model)
        model.refresh_from_db()
        self.assertTrue(model.last_try_output)
        self.assertEqual(model.last_try_error, "")
        self.assertIsNotNone(model.last_tried_at)
        shown = [str(m) for m in response.context["messages"]]
        self.assertEqual(shown, [f"tiny says: {model.last_try_output}"])

    def test_it_does_not_wait_for_the_worker_and_says_where_the_answer_will_be(self):
        model = LanguageModel.objects.create(name="tiny", is_student=True, source=str(self.tiny_dir))
        queued = {
            "default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default", "training"]}
        }
        with self.settings(TASKS=queued, TEACHLOOP_TRY_WAIT_S=0):
            started = time.monotonic()
            response = self.try_it(model)
            waited = time.monotonic() - started
        model.refresh_from_db()
        self.assertIsNone(model.last_tried_at)  # nothing generated in the request: a worker will
        self.assertLess(waited, 5)
        [shown] = [str(m) for m in response.context["messages"]]
        self.assertIn("tiny: trying it in the background", shown)
        self.assertIn("'last try' column", shown)

    def test_it_shows_one_clear_error_for_a_missing_model(self):
        model = LanguageModel.objects.create(name="ghost", is_student=True, source="/nowhere/ghost-model")
        response = self.try_it(model)
        model.refresh_from_db()
        self.assertIn("ghost", model.last_try_error)
        self.assertNotIn("Traceback", model.last_try_error)
        self.assertEqual(len(model.last_try_error.splitlines()), 1)
        self.assertContains(response, "could not generate: ghost: no such folder")


class BaseUrlTestCase(BaseTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)

    def test_it_accepts_dotless_service_hosts(self):
        for i, url in enumerate(
            ["http://vllm:8000/v1", "https://teacher.internal/v1", "http://[::1]:8001/v1"]
        ):
            response = self.client.post(
                ADD_URL, form_data(name=f"t{i}", backend="openai", source="m", base_url=url)
            )
            self.assertEqual(response.status_code, 302, url)

    def test_it_registers_one_of_openais_newest_models_with_their_request_fields(self):
        self.client.post(
            ADD_URL,
            form_data(
                name="newest",
                backend="openai",
                source="gpt-newest",
                base_url="https://api.openai.com/v1",
                token_limit_field="max_completion_tokens",
                send_sampling=None,
            ),
        )
        spec = LanguageModel.objects.get(name="newest").to_spec()
        self.assertEqual((spec.token_limit_field, spec.send_sampling), ("max_completion_tokens", False))

    def test_it_rejects_a_base_url_that_is_not_http(self):
        response = self.client.post(ADD_URL, form_data(backend="openai", source="m", base_url="ftp://x/v1"))
        self.assertContains(response, "Give an http(s) URL")
