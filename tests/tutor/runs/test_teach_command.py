"""`manage.py teach`: a headless teaching run on the real training app, resumable."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from tests.tutor.core.runs.fakes import ScriptedLLM, add_items, mini_course, teacher_reply
from tests.tutor.runs.helpers import make_models_and_course, scripted_models
from training import services as training_services
from training.models import LanguageModel, TrainingDataset
from tutor.core.runs.state import STEPS, RunConfig
from tutor.courses import services
from tutor.models import Exercise, TeachingRun
from tutor.runs import selectors
from tutor.runs import services as teaching

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def scripted_teacher(monkeypatch):
    """A teacher that explains correctly and writes checkable new items; the student is the tiny model."""
    teacher = ScriptedLLM("scripted", teacher_reply(generate=add_items))
    real = training_services.language_model_llm
    monkeypatch.setattr(
        teaching,
        "language_model_llm",
        lambda model, **_: teacher if model.name == "scripted" else real(model=model),
    )
    return teacher


@pytest.fixture
def setup(tiny_model_dir, scripted_teacher):
    LanguageModel.objects.create(name="tiny", is_student=True, source=str(tiny_model_dir), max_new_tokens=16)
    LanguageModel.objects.create(
        name="scripted", is_teacher=True, backend="openai", source="m", base_url="http://127.0.0.1:9/v1"
    )
    services.course_save(course=mini_course(train=2, probe=2, exam=2))
    return scripted_teacher


def teach(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("teach", *args, stdout=out, stderr=err)
    return out.getvalue()


def test_it_teaches_headless_and_prints_the_table_and_adapter(setup):
    output = teach(
        "--course",
        "mini",
        "--student",
        "tiny",
        "--teacher",
        "scripted",
        "--rounds",
        "1",
        "--budget",
        "2",
        "--train-steps",
        "2",
        "--lora-r",
        "4",
        "--precision",
        "fp32",
        "--acceptance",  # two steps on the tiny model need not gain: keep the adapter to inspect it
        "always",
    )
    run = TeachingRun.objects.get()
    assert run.status == "succeeded", run.last_error
    lines = output.strip().splitlines()
    assert lines[0].split() == ["round", "skill", "probe", "exam", "held", "base", "base"]
    assert lines[1].split() == ["(train", "-out)", "(train", "(held)"]
    assert any(line.split()[:2] == ["0", "add_1d"] for line in lines)
    assert Path(lines[-1]).is_dir() and lines[-1] == run.adapter_path
    assert (Path(run.adapter_path) / "adapter_model.safetensors").is_file()
    assert run.train_config["precision"] == "fp32"
    saved = json.loads((Path(run.adapter_path) / "teachloop_train_config.json").read_text())
    assert saved["precision"] == "fp32" and saved["lora_r"] == 4
    # Nothing from the exam split reached the training data.
    trained = json.dumps(list(TrainingDataset.objects.values_list("records", flat=True)))
    for prompt in Exercise.objects.filter(split="exam").values_list("prompt", flat=True):
        assert prompt not in trained


def test_it_resumes_an_interrupted_run_without_repeating_teacher_calls(setup):
    run = teaching.teaching_run_create(
        course=services.Course.objects.get(key="mini"),
        student=LanguageModel.objects.get(name="tiny"),
        teacher=LanguageModel.objects.get(name="scripted"),
        train={"disabled": True},
        rounds=1,
        explain_budget=2,
    )

    def stop_after_explain(step, round_index, info):
        if step == "explain" and info.get("status") == "done":
            TeachingRun.objects.filter(pk=run.pk).update(cancel_requested=True)

    teaching.teaching_run_execute(run=run, progress=stop_after_explain)
    run.refresh_from_db()
    assert run.status == "cancelled"
    explain_calls = setup.count("explain")
    assert explain_calls == RunConfig().explain_samples  # the greedy candidates, then the sampled ones

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


# --- settings, resume rules (scripted student and teacher: no model is loaded) ---------------------


@pytest.fixture
def scripted(monkeypatch):
    fakes = scripted_models(monkeypatch)
    course, teacher, student, _ = make_models_and_course()
    return fakes, course, teacher, student


def scripted_teach(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(
        "teach",
        "--student",
        "scripted-student",
        "--teacher",
        "scripted-teacher",
        *args,
        stdout=out,
        stderr=err,
    )
    return out.getvalue(), err.getvalue()


def resume(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("teach", "--resume", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def scripted_run(scripted, **config) -> TeachingRun:
    _, course, teacher, student = scripted
    return teaching.teaching_run_create(
        course=course,
        student=student,
        teacher=teacher,
        train={"disabled": True},
        **{"rounds": 1, "plan_budget": 4, "explain_budget": 2, **config},
    )


def test_it_passes_the_plan_seed_and_budgets_to_the_run(scripted):
    scripted_teach(
        "--course",
        "mini",
        "--no-train",
        "--rounds",
        "1",
        "--plan",
        "random",
        "--seed",
        "7",
        "--budget",
        "1",
        "--plan-budget",
        "3",
        "--generate-budget",
        "2",
        "--generate-k",
        "1",
        "--continue-lr",
        "0.5",
    )
    run = TeachingRun.objects.get()
    assert run.status == "succeeded", run.last_error
    assert run.config["continue_lr"] == 0.5
    assert {
        k: run.config[k]
        for k in ("rounds", "plan", "seed", "explain_budget", "plan_budget", "generate_budget", "generate_k")
    } == {
        "rounds": 1,
        "plan": "random",
        "seed": 7,
        "explain_budget": 1,
        "plan_budget": 3,
        "generate_budget": 2,
        "generate_k": 1,
    }
    state = selectors.teaching_run_state_load(run)
    assert state.config == RunConfig.from_dict(run.config)  # what the loop ran with
    assert (
        len(state.rounds[0].explanations) <= 1 and sum(state.rounds[0].plan["items_per_skill"].values()) == 3
    )


def test_it_answers_multiple_choice_by_likelihood_and_prints_the_general_probe(scripted):
    fakes = scripted[0]
    out, err = scripted_teach(
        "--course", "mini", "--no-train", "--rounds", "1", "--choice-scoring", "likelihood"
    )
    run = TeachingRun.objects.get()
    assert run.status == "succeeded", run.last_error
    # Each step's time, on a line of its own between the bar's redraws.
    assert all(re.search(rf"\rround 0 {step}: \d+ s\n", err) for step in STEPS), err
    assert run.config["choice_scoring"] == "likelihood"
    # The general probe's questions are multiple choice: scored, not written, and shown in the table.
    scored = {question for question, _, _ in fakes["scripted-student"].scored}
    assert len(scored) == run.config["general_probe"]
    general = run.rounds.get().extra["general"]
    line = next(line for line in out.splitlines() if "general probe" in line)
    assert line.split()[3:] == [
        "—",
        f"{general['accuracy']:.0%}",
        "—",
        f"{general['base_accuracy']:.0%}",
        "—",
    ]


def test_it_uses_the_loops_defaults_for_what_is_not_given(scripted):
    scripted_teach("--course", "mini", "--no-train")
    run = TeachingRun.objects.get()
    assert run.config == {**RunConfig().to_dict(), "rounds": 2}
    assert run.worker  # this process, named for anyone who tries to resume it elsewhere


def test_it_refuses_to_resume_a_run_a_worker_holds(scripted):
    run = scripted_run(scripted)
    for status in ("running", "queued"):
        TeachingRun.objects.filter(pk=run.pk).update(
            status=status, lease="theirs", worker="gpu1:42", heartbeat_at=timezone.now()
        )
        with pytest.raises(
            CommandError, match=rf"run {run.pk} is {status} on gpu1:42 .*cancel it on its page"
        ):
            resume(str(run.pk))
        run.refresh_from_db()
        assert (run.status, run.lease) == (status, "theirs")  # untouched
    assert scripted[0]["scripted-student"].calls == []


def test_it_takes_over_a_run_whose_worker_died(scripted):
    run = scripted_run(scripted)
    TeachingRun.objects.filter(pk=run.pk).update(
        status="running", lease="dead", worker="gpu1:42", heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    resume(str(run.pk))
    run.refresh_from_db()
    assert (run.status, run.lease) == ("succeeded", "")
    assert run.worker != "gpu1:42"


def test_it_extends_a_finished_run_with_more_rounds_and_starts_the_bar_where_it_was(scripted):
    run = scripted_run(scripted)
    teaching.teaching_run_execute(run=run)
    with pytest.raises(CommandError, match=rf"run {run.pk} is finished .*--resume {run.pk} --rounds 2"):
        resume(str(run.pk))
    _, err = resume(str(run.pk), "--rounds", "2")
    run.refresh_from_db()
    assert (run.status, run.config["rounds"]) == ("succeeded", 2), run.last_error
    assert [r.index for r in run.rounds.all()] == [0, 1]
    steps = len(STEPS)
    assert f" {steps}/{2 * steps} " in err and f" {2 * steps}/{2 * steps} " in err  # from round 1 to 100%
    assert not re.search(rf"(?<!\d)0/{2 * steps} ", err)


def test_it_refuses_fewer_rounds_and_new_settings_on_resume(scripted):
    run = scripted_run(scripted, rounds=2)
    TeachingRun.objects.filter(pk=run.pk).update(status="cancelled")
    with pytest.raises(CommandError, match="has 2 rounds; --rounds can only add rounds"):
        resume(str(run.pk), "--rounds", "1")
    with pytest.raises(CommandError, match="--budget, --seed: a resumed run keeps its settings"):
        resume(str(run.pk), "--budget", "3", "--seed", "1")
    run.refresh_from_db()
    assert (run.status, run.config["rounds"]) == ("cancelled", 2)


def test_it_names_a_missing_run(scripted):
    with pytest.raises(CommandError, match="no teaching run 999"):
        resume("999")


def test_its_help_and_the_web_form_read_the_settings_own_help():
    from io import StringIO

    from django.core.management import get_commands, load_command_class

    from training.core.fields import setting_help
    from tutor.runs.forms import TeachingRunForm

    parser = load_command_class(get_commands()["teach"], "teach").create_parser("manage.py", "teach")
    out = StringIO()
    parser.print_help(out)
    flat = " ".join(out.getvalue().split())
    assert setting_help(RunConfig, "plan_budget") in flat
    form = TeachingRunForm()
    assert setting_help(RunConfig, "plan_budget") in form.fields["plan_budget"].help_text.lower()
    assert form.fields["rounds"].initial == RunConfig().rounds
    assert form.fields["continue_lr"].initial == RunConfig().continue_lr
    assert setting_help(RunConfig, "continue_lr") in flat
