"""`manage.py bootstrap`: the bundled default model and the first admin account."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command
from django.test import override_settings

from training.core.bundled import BUNDLED_MODEL_NAME, bundled_gguf_path
from training.models import LanguageModel
from training.services import language_model_try

pytestmark = pytest.mark.django_db


def bootstrap(*args: str) -> str:
    out = io.StringIO()
    call_command("bootstrap", "--skip-convert", *args, stdout=out)
    return out.getvalue()


def test_it_registers_the_bundled_model_as_default_teacher_and_student():
    bootstrap()
    model = LanguageModel.objects.get(name=BUNDLED_MODEL_NAME)
    assert model.backend == "gguf"
    assert model.source == str(bundled_gguf_path())
    assert (model.is_default_teacher, model.is_default_student, model.enabled) == (True, True, True)


def test_it_prints_a_working_admin_password_once():
    output = bootstrap()
    password = re.search(r"Created admin account 'admin' with password: (\S+)", output).group(1)
    assert authenticate(username="admin", password=password) is not None
    again = bootstrap()
    assert "Created admin" not in again
    assert get_user_model().objects.filter(is_superuser=True).count() == 1
    assert LanguageModel.objects.filter(name=BUNDLED_MODEL_NAME).count() == 1


def test_it_keeps_a_default_teacher_chosen_by_an_admin():
    LanguageModel.objects.create(
        name="big",
        is_teacher=True,
        is_default_teacher=True,
        backend="openai",
        source="m",
        base_url="http://x:1/v1",
    )
    bootstrap()
    bundled = LanguageModel.objects.get(name=BUNDLED_MODEL_NAME)
    assert not bundled.is_default_teacher
    assert bundled.is_default_student
    assert LanguageModel.objects.get(name="big").is_default_teacher


@pytest.mark.slow
def test_it_converts_the_bundled_model_and_the_registered_model_generates(model_cache_dir):
    """The README's first-run path: bootstrap (with conversion), then "try it" produces text."""
    with override_settings(TEACHLOOP_MODEL_CACHE_DIR=model_cache_dir):
        out = io.StringIO()
        call_command("bootstrap", "--no-admin", stdout=out)
        assert "Model cache ready at" in out.getvalue()
        model = language_model_try(model=LanguageModel.objects.get(name=BUNDLED_MODEL_NAME))
    assert model.last_try_error == ""
    assert len(model.last_try_output.split()) >= 3
