"""Loading an adapter into a served model (vLLM's runtime LoRA loading), against the fake
OpenAI-compatible server: the client call, and the Adapters page's "Load into …"."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse

from tests.base import BaseTestCase
from tests.fake_openai_server import FakeOpenAIServer
from training.core.llm.base import ModelSpec
from training.core.llm.openai_compat import AdapterLoadError, OpenAICompatLLM
from training.models import Adapter, LanguageModel

KEY_ENV = "TEACHLOOP_TEST_VLLM_KEY"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def adapter_folder(parent: Path) -> Path:
    """Enough of a peft folder for the fake server (and for TeachLoop's own check)."""
    folder = parent / "adapter"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA"}')
    (folder / "adapter_model.safetensors").write_bytes(b"\0")
    return folder


# --- the client call -----------------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer(models={"teacher"}) as fake:
        yield fake


def served(base_url: str, **overrides) -> OpenAICompatLLM:
    fields = {
        "name": "served",
        "backend": "openai",
        "source": "teacher",
        "base_url": base_url,
        "timeout_s": 5.0,
    }
    return OpenAICompatLLM(ModelSpec(**{**fields, **overrides}))


def test_it_loads_an_adapter_that_then_answers_as_a_model_of_its_own(server, tmp_path):
    folder = adapter_folder(tmp_path)
    llm = served(server.base_url)

    reply = llm.load_lora_adapter("tiny-v3", str(folder))

    assert reply == "Success: LoRA adapter 'tiny-v3' added successfully."
    [request] = server.requests
    assert (request.method, request.path) == ("POST", "/v1/load_lora_adapter")
    assert request.body == {"lora_name": "tiny-v3", "lora_path": str(folder)}
    [answer] = llm.generate([[{"role": "user", "content": "hi"}]], adapter="tiny-v3")
    assert answer.text == "You said: hi"
    assert server.chat_requests()[0].body["model"] == "tiny-v3"
    llm.close()


def test_it_says_what_the_server_refused_in_one_line(server, tmp_path):
    folder = adapter_folder(tmp_path)
    llm = served(server.base_url)
    llm.load_lora_adapter("tiny-v3", str(folder))
    with pytest.raises(AdapterLoadError) as again:
        llm.load_lora_adapter("tiny-v3", str(folder))
    assert again.value.reason == "refused"
    assert str(again.value) == (
        "served: the server refused to load adapter 'tiny-v3' (400): "
        "The lora adapter 'tiny-v3' has already been loaded."
    )
    with pytest.raises(AdapterLoadError) as missing:
        llm.load_lora_adapter("other", "/srv/nowhere")
    assert missing.value.reason == "not_found"
    assert str(missing.value) == (
        "served: the server found no adapter at /srv/nowhere: "
        "Loading lora other failed: No adapter found for /srv/nowhere"
    )
    server.fail_next(500, message="CUDA out of memory")
    before = len(server.requests)
    with pytest.raises(AdapterLoadError, match=r"refused to load adapter 'x' \(500\): CUDA out of memory$"):
        llm.load_lora_adapter("x", str(folder))
    assert (
        len(server.requests) == before + 1
    )  # never retried: a lost success would come back "already loaded"
    llm.close()


def test_it_says_when_the_server_does_not_load_adapters_at_run_time(tmp_path):
    with FakeOpenAIServer(models={"teacher"}, lora_updating=False) as fake:
        llm = served(fake.base_url)
        with pytest.raises(AdapterLoadError) as caught:
            llm.load_lora_adapter("tiny-v3", str(adapter_folder(tmp_path)))
        llm.close()
    assert caught.value.reason == "disabled"
    assert "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True" in str(caught.value)


def test_it_says_when_the_server_is_unreachable_or_refuses_the_key(tmp_path, monkeypatch):
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(AdapterLoadError) as caught:
        served(url).load_lora_adapter("tiny-v3", "/data/x")
    assert caught.value.reason == "unreachable"
    assert str(caught.value) == f"served: cannot reach {url} (connection refused) — is the server running?"

    monkeypatch.delenv(KEY_ENV, raising=False)
    with FakeOpenAIServer(models={"teacher"}, api_key="k-1") as fake:
        with pytest.raises(AdapterLoadError) as caught:
            served(fake.base_url, api_key_env=KEY_ENV).load_lora_adapter("tiny-v3", "/data/x")
        assert caught.value.reason == "key" and KEY_ENV in str(caught.value)
        monkeypatch.setenv(KEY_ENV, "k-1")
        folder = adapter_folder(tmp_path)
        assert "added successfully" in served(fake.base_url, api_key_env=KEY_ENV).load_lora_adapter(
            "a", str(folder)
        )


# --- the Adapters page ------------------------------------------------------------------------------


class LoadIntoServedModelTestCase(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _server(self, settings, tmp_path):
        self.tmp = tmp_path
        settings.TEACHLOOP_VLLM_ADAPTER_DIR = ""
        with FakeOpenAIServer(models={"teacher"}) as fake:
            self.server = fake
            yield

    def setUp(self) -> None:
        super().setUp()
        self.folder = adapter_folder(Path(settings.TEACHLOOP_DATA_DIR) / "jobs" / "7-20261201T000000000000")
        self.local = LanguageModel.objects.create(
            name="qwen", is_teacher=True, source="Qwen/Qwen2.5-7B-Instruct"
        )
        self.adapter = Adapter.objects.create(
            base_model=self.local, version=3, path=str(self.folder), method="dpo"
        )
        self.teacher = LanguageModel.objects.create(
            name="served-teacher",
            is_teacher=True,
            backend="openai",
            source="teacher",
            base_url=self.server.base_url,
            api_key_env="TEACHER_API_KEY",
            adapters_of=self.local,
        )
        self.client.force_login(self.alice)

    def load(self, adapter: Adapter | None = None, served: LanguageModel | None = None):
        url = reverse(
            "training:adapter-load", args=[(adapter or self.adapter).pk, (served or self.teacher).pk]
        )
        return self.client.post(url, follow=True)

    def test_it_offers_to_load_an_adapter_only_into_a_server_of_its_base(self):
        other = LanguageModel.objects.create(name="small", is_student=True, source="/models/small")
        stranger = Adapter.objects.create(base_model=other, version=1, path=str(self.folder), method="sft")
        page = self.client.get(reverse("training:adapters"))
        self.assertContains(page, "Load into served-teacher", count=1)
        self.assertContains(
            page, f'action="{reverse("training:adapter-load", args=[self.adapter.pk, self.teacher.pk])}"'
        )
        self.assertNotContains(page, reverse("training:adapter-load", args=[stranger.pk, self.teacher.pk]))

        response = self.load(stranger)

        self.assertContains(
            response,
            "Loading small v1 into served-teacher failed: "
            "served-teacher loads adapters of qwen, not of small",
        )
        self.assertEqual(self.server.requests, [])

    def test_it_loads_the_adapter_and_says_how_to_teach_with_it(self):
        response = self.load()

        self.assertEqual(self.server.loras, {"qwen-v3": str(self.folder)})
        self.assertContains(response, "served-teacher serves qwen v3 as model “qwen-v3”")
        self.assertContains(
            response,
            f"python manage.py register_model qwen-v3 --backend openai --base-url {self.server.base_url} "
            "--source qwen-v3 --api-key-env TEACHER_API_KEY --teacher --try",
        )

    def test_it_sends_the_folder_as_the_server_sees_it(self):
        with self.settings(TEACHLOOP_VLLM_ADAPTER_DIR="/teachloop-data"):
            response = self.load()
        [request] = self.server.requests
        self.assertEqual(request.body["lora_path"], "/teachloop-data/jobs/7-20261201T000000000000/adapter")
        # The fake server has no such folder: the page says so, and what to check.
        self.assertContains(
            response,
            "the server found no adapter at /teachloop-data/jobs/7-20261201T000000000000/adapter",
        )
        self.assertContains(
            response, "(TEACHLOOP_VLLM_ADAPTER_DIR is /teachloop-data: is the data volume mounted there?)"
        )

        outside = adapter_folder(self.tmp / "elsewhere")
        Adapter.objects.filter(pk=self.adapter.pk).update(path=str(outside))
        with self.settings(TEACHLOOP_VLLM_ADAPTER_DIR="/teachloop-data"):
            response = self.load()
        self.assertContains(response, f"{outside} is outside TEACHLOOP_DATA_DIR")
        self.assertEqual(len(self.server.requests), 1)

    def test_it_shows_the_servers_own_refusal(self):
        self.server.fail_next(400, message="LoRA rank 64 is greater than max_lora_rank 16.")
        response = self.load()
        self.assertContains(
            response,
            "Loading qwen v3 into served-teacher failed: served-teacher: the server refused to load adapter "
            "&#x27;qwen-v3&#x27; (400): LoRA rank 64 is greater than max_lora_rank 16.",
        )
        self.assertEqual(self.server.loras, {})

    def test_it_says_when_the_server_is_unreachable(self):
        url = f"http://127.0.0.1:{free_port()}/v1"
        LanguageModel.objects.filter(pk=self.teacher.pk).update(base_url=url)
        response = self.load()
        self.assertContains(response, f"served-teacher: cannot reach {url} (connection refused)")

    def test_it_says_when_the_adapter_folder_is_gone(self):
        shutil.rmtree(self.folder)
        response = self.load()
        self.assertContains(response, f"qwen v3: no adapter folder at {self.folder}")
        self.assertEqual(self.server.requests, [])

    def test_it_is_for_staff_and_posts_only(self):
        url = reverse("training:adapter-load", args=[self.adapter.pk, self.teacher.pk])
        self.assertEqual(self.client.get(url).status_code, 405)
        self.client.force_login(self.bob)
        self.assertEqual(self.client.post(url).status_code, 403)
        self.assertEqual(self.server.requests, [])

    def test_only_a_served_model_loads_adapters_of_a_local_one(self):
        self.local.adapters_of = self.teacher
        with self.assertRaises(ValidationError) as caught:
            self.local.full_clean()
        self.assertIn("adapters_of", caught.exception.message_dict)
        self.teacher.adapters_of = self.teacher
        with self.assertRaises(ValidationError) as caught:
            self.teacher.full_clean()
        self.assertIn("adapters_of", caught.exception.message_dict)
