"""`manage.py teach`: a headless teaching run on the real training app, resumable."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.tutor.core.teaching_fakes import ScriptedLLM, add_items, mini_course, teacher_reply
from training import services as training_services
from training.models import LanguageModel, TrainingDataset
from tutor import services, teaching
from tutor.models import Exercise, TeachingRun

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def scripted_teacher(monkeypatch):
    """A teacher that explains correctly and writes checkable new items; the student is the real tiny model."""
    teacher = ScriptedLLM("scripted", teacher_reply(generate=add_items))
    real = training_services.language_model_llm
    monkeypatch.setattr(teaching, "language_model_llm",
                        lambda model: teacher if model.name == "scripted" else real(model=model))
    return teacher


@pytest.fixture
def setup(tiny_model_dir, scripted_teacher):
    LanguageModel.objects.create(name="tiny", is_student=True, source=str(tiny_model_dir), max_new_tokens=16)
    LanguageModel.objects.create(name="scripted", is_teacher=True, backend="openai", source="m",
                                 base_url="http://127.0.0.1:9/v1")
    services.course_save(course=mini_course(train=2, probe=2, exam=2))
    return scripted_teacher


def teach(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("teach", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_it_teaches_headless_and_prints_the_table_and_adapter(setup):
    output = teach("--course", "mini", "--student", "tiny", "--teacher", "scripted", "--rounds", "1",
                   "--budget", "2", "--train-steps", "2", "--lora-r", "4")
    run = TeachingRun.objects.get()
    assert run.status == "succeeded", run.last_error
    lines = output.strip().splitlines()
    assert lines[0].split() == ["round", "skill", "probe", "exam", "base"]
    assert any(line.split()[:2] == ["0", "add_1d"] for line in lines)
    assert Path(lines[-1]).is_dir() and lines[-1] == run.adapter_path
    assert (Path(run.adapter_path) / "adapter_model.safetensors").is_file()
    # Nothing from the exam split reached the training data.
    trained = json.dumps(list(TrainingDataset.objects.values_list("records", flat=True)))
    for prompt in Exercise.objects.filter(split="exam").values_list("prompt", flat=True):
        assert prompt not in trained


def test_it_resumes_an_interrupted_run_without_repeating_teacher_calls(setup):
    run = teaching.teaching_run_create(course=services.Course.objects.get(key="mini"),
                                       student=LanguageModel.objects.get(name="tiny"),
                                       teacher=LanguageModel.objects.get(name="scripted"),
                                       train={"disabled": True}, rounds=1, explain_budget=2)

    def stop_after_explain(step, round_index, info):
        if step == "explain" and info.get("status") == "done":
            TeachingRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    teaching.teaching_run_execute(run=run, progress=stop_after_explain)
    run.refresh_from_db()
    assert run.status == "cancelled"
    explain_calls = setup.count("explain")
    assert explain_calls == 1

    output = teach("--resume", str(run.pk))
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert setup.count("explain") == explain_calls  # the paid teacher calls were not repeated
    assert "(no adapter: nothing was trained)" in output


def test_it_refuses_a_served_student(setup):
    with pytest.raises(CommandError, match="student must be a local model"):
        teach("--course", "mini", "--student", "scripted", "--teacher", "scripted")


def test_it_names_the_imported_courses_when_one_is_missing(setup):
    with pytest.raises(CommandError, match="imported: mini"):
        teach("--course", "nope", "--student", "tiny", "--teacher", "scripted")
