"""Migration 0005: a run's ``results`` and ``round_jobs`` JSON become ``Round`` rows, and back."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("tutor", "0004_run_explanations")]
AFTER = [("tutor", "0005_rounds")]

ROUND_0 = {
    "round": 0,
    "probe": {"add_1d": 0.5},
    "exam": {"add_1d": 0.75},
    "base": {"add_1d": 0.25},
    "accuracy": 0.75,
    "base_accuracy": 0.25,
    "vs_base": 0.5,
    "vs_previous": 0.5,
    "agreement": 0.6,
    "teacher_accuracy": 1.0,
    "explained": 2,
    "dropped_explanations": 1,
    "helped": 1,
    "generated_kept": 3,
    "sft_records": 4,
    "train_note": "trained on 4 records",
    "adapter_path": "/a/1",
    "done_steps": ["diagnose", "reexamine"],
    "warnings": ["possible teacher hacking: x"],
    "forgetting": {"mul_1d": {"before": 0.5, "after": 0.25}},
}
# A round cut short: what the loop wrote before re-examining (no exam, no adapter yet).
ROUND_1 = {
    "round": 1,
    "probe": {"add_1d": 0.75},
    "exam": {},
    "base": {},
    "accuracy": None,
    "base_accuracy": None,
    "vs_base": None,
    "vs_previous": None,
    "agreement": None,
    "teacher_accuracy": None,
    "explained": 0,
    "dropped_explanations": 0,
    "helped": 0,
    "generated_kept": 0,
    "sft_records": 0,
    "train_note": "",
    "adapter_path": None,
    "done_steps": ["diagnose"],
    "warnings": [],
}


def migrate(target) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.migrate(target)
    executor.loader.build_graph()  # the applied set changed
    return executor


@pytest.fixture
def executor():
    executor = migrate(BEFORE)
    yield executor
    migrate(executor.loader.graph.leaf_nodes())  # the other tests need the current schema


def test_it_turns_results_and_round_jobs_into_rounds_and_back(executor):
    apps = executor.loader.project_state(BEFORE).apps
    LanguageModel = apps.get_model("training", "LanguageModel")
    model = LanguageModel.objects.create(name="m", source="x")
    course = apps.get_model("tutor", "Course").objects.create(key="mini", name="Mini")
    dataset = apps.get_model("training", "TrainingDataset").objects.create(
        name="d", method="sft", records=[], record_count=0, sha256="0" * 64
    )
    job = apps.get_model("training", "TrainingJob").objects.create(
        base_model=model, dataset=dataset, method="sft"
    )
    TeachingRun = apps.get_model("tutor", "TeachingRun")
    run = TeachingRun.objects.create(
        course=course,
        student=model,
        teacher=model,
        config={"rounds": 2},
        results=[ROUND_0, ROUND_1],
        round_jobs={"0": job.pk, "1": job.pk + 100},
    )
    empty = TeachingRun.objects.create(course=course, student=model, teacher=model, config={"rounds": 1})

    apps = migrate(AFTER).loader.project_state(AFTER).apps
    Round = apps.get_model("tutor", "Round")
    first, second = Round.objects.filter(run_id=run.pk).order_by("index")
    assert (first.probe, first.exam, first.base) == (ROUND_0["probe"], ROUND_0["exam"], ROUND_0["base"])
    assert (first.accuracy, first.vs_base, first.sft_records, first.adapter_path) == (0.75, 0.5, 4, "/a/1")
    assert first.warnings == ROUND_0["warnings"] and first.done_steps == ROUND_0["done_steps"]
    assert first.extra == {"forgetting": ROUND_0["forgetting"]}  # no column: kept, not lost
    assert first.training_job_id == job.pk
    assert second.training_job_id is None  # its job was deleted since: the JSON never protected it
    assert (second.accuracy, second.adapter_path, second.extra) == (None, "", {})
    assert not Round.objects.filter(run_id=empty.pk).exists()

    apps = migrate(BEFORE).loader.project_state(BEFORE).apps
    run = apps.get_model("tutor", "TeachingRun").objects.get(pk=run.pk)
    assert run.round_jobs == {"0": job.pk}
    assert run.results[0] == ROUND_0
    assert run.results[1] == {**ROUND_1, "adapter_path": ""}
