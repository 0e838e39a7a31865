"""`manage.py register_model`: register or update a teacher/student from a terminal."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from tests.fake_openai_server import FakeOpenAIServer
from training.models import LanguageModel

pytestmark = pytest.mark.django_db


def register(*args: str) -> str:
    out = io.StringIO()
    call_command("register_model", *args, stdout=out)
    return out.getvalue()


def vllm_teacher(*extra: str) -> str:
    # The command docs/deploy.md gives for the compose stack's `teacher` service.
    return register(
        "big-teacher",
        "--backend",
        "openai",
        "--base-url",
        "http://teacher:8000/v1",
        "--source",
        "teacher",
        "--api-key-env",
        "TEACHER_API_KEY",
        "--teacher",
        *extra,
    )


def test_it_registers_an_openai_compatible_teacher():
    output = vllm_teacher("--default-teacher")
    model = LanguageModel.objects.get(name="big-teacher")
    assert (model.backend, model.base_url, model.source, model.api_key_env) == (
        "openai",
        "http://teacher:8000/v1",
        "teacher",
        "TEACHER_API_KEY",
    )
    assert (model.is_teacher, model.is_student, model.is_default_teacher) == (True, False, True)
    assert "Registered big-teacher (openai; teacher, default teacher)" in output


def test_it_registers_one_of_openais_newest_models_with_their_request_fields():
    vllm_teacher("--token-limit-field", "max_completion_tokens", "--no-send-sampling")
    spec = LanguageModel.objects.get(name="big-teacher").to_spec()
    assert (spec.token_limit_field, spec.send_sampling) == ("max_completion_tokens", False)
    vllm_teacher("--send-sampling")  # later options change only what they name
    spec = LanguageModel.objects.get(name="big-teacher").to_spec()
    assert (spec.token_limit_field, spec.send_sampling) == ("max_completion_tokens", True)


def test_it_moves_the_default_teacher_to_the_new_model():
    LanguageModel.objects.create(
        name="small",
        source="org/small",
        is_teacher=True,
        is_student=True,
        is_default_teacher=True,
        is_default_student=True,
    )
    vllm_teacher("--default-teacher")
    small = LanguageModel.objects.get(name="small")
    assert not small.is_default_teacher and small.is_default_student
    assert LanguageModel.objects.get(name="big-teacher").is_default_teacher


def test_it_updates_only_the_options_given():
    vllm_teacher("--temperature", "0.7")
    output = register("big-teacher", "--base-url", "http://gpu-box:8001/v1", "--student")
    model = LanguageModel.objects.get(name="big-teacher")
    assert model.base_url == "http://gpu-box:8001/v1"
    assert (model.source, model.api_key_env, model.temperature) == ("teacher", "TEACHER_API_KEY", 0.7)
    assert model.roles == ["teacher", "student"]
    assert LanguageModel.objects.count() == 1
    assert output.startswith("Updated big-teacher")


def test_it_drops_the_default_flag_with_the_role():
    vllm_teacher("--default-teacher")
    register("big-teacher", "--no-teacher", "--student")
    model = LanguageModel.objects.get(name="big-teacher")
    assert (model.is_teacher, model.is_default_teacher, model.is_student) == (False, False, True)


def test_it_registers_a_local_student_with_the_default_backend():
    register(
        "student",
        "--source",
        "HuggingFaceTB/SmolLM2-360M-Instruct",
        "--default-student",
        "--max-new-tokens",
        "64",
    )
    model = LanguageModel.objects.get(name="student")
    assert (model.backend, model.is_student, model.is_default_student, model.max_new_tokens) == (
        "transformers",
        True,
        True,
        64,
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--backend", "openai", "--source", "teacher", "--teacher"],
            "base_url: An OpenAI-compatible model needs",
        ),
        (["--backend", "gguf", "--source", "/models/m.bin", "--student"], "source: A GGUF model's source"),
        (["--source", "org/m"], "at least one role"),
        (
            [
                "--backend",
                "openai",
                "--source",
                "m",
                "--teacher",
                "--base-url",
                "http://teacher:8000/v1",
                "--api-key-env",
                "sk-abc123",
            ],
            "Use a variable name",
        ),
        (["--teacher"], "is not registered yet: give at least --source"),
        (
            ["--source", "org/m", "--no-teacher", "--default-teacher"],
            "--no-teacher contradicts --default-teacher",
        ),
    ],
)
def test_it_refuses_an_invalid_model_with_the_reason(args, message):
    with pytest.raises(CommandError, match=message):
        register("bad", *args)
    assert not LanguageModel.objects.exists()


def test_it_leaves_a_model_unchanged_when_an_update_is_invalid():
    vllm_teacher()
    with pytest.raises(CommandError, match="base_url"):
        register("big-teacher", "--base-url", "")
    assert LanguageModel.objects.get(name="big-teacher").base_url == "http://teacher:8000/v1"


def test_it_tries_the_served_teacher(monkeypatch):
    monkeypatch.setenv("TEACHER_API_KEY", "secret-key")
    with FakeOpenAIServer(models={"teacher"}) as server:
        output = register(
            "served",
            "--backend",
            "openai",
            "--base-url",
            server.base_url,
            "--source",
            "teacher",
            "--api-key-env",
            "TEACHER_API_KEY",
            "--teacher",
            "--try",
        )
        assert server.chat_requests()[-1].headers["authorization"] == "Bearer secret-key"
    assert "You said: In two sentences, explain what a fraction is." in output


def test_it_fails_the_try_when_the_server_is_down():
    with pytest.raises(CommandError, match="served"):
        register(
            "served",
            "--backend",
            "openai",
            "--base-url",
            "http://127.0.0.1:9/v1",
            "--source",
            "teacher",
            "--teacher",
            "--try",
        )
    assert LanguageModel.objects.get(name="served").last_try_error  # registered, and why it failed is kept
