"""Teaching runs in workers: claimed once, never left "running" by a dead or crashed worker, and
each round's training job reused rather than trained twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.tutor.runs.helpers import make_models_and_course, scripted_models
from training import recovery
from training.models import Adapter, TrainingDataset, TrainingJob
from tutor.models import Round, TeachingRun
from tutor.runs import services as teaching

pytestmark = pytest.mark.django_db

RECORDS = [
    {"messages": [{"role": "user", "content": "What is 1 + 1?"}, {"role": "assistant", "content": "2"}]}
]


@pytest.fixture
def dummy_tasks(settings):
    settings.TASKS = {
        "default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend", "QUEUES": ["default", "training"]}
    }
    from django_tasks import default_task_backend

    default_task_backend.clear()
    return default_task_backend


@pytest.fixture
def models(monkeypatch):
    fakes = scripted_models(monkeypatch)
    course, teacher, student, _ = make_models_and_course()
    return fakes, course, teacher, student


@pytest.fixture
def run(models):
    _, course, teacher, student = models
    return teaching.teaching_run_create(
        course=course,
        student=student,
        teacher=teacher,
        train={"disabled": True},
        rounds=1,
        plan_budget=4,
        explain_budget=2,
    )


def job_for(student, **fields) -> TrainingJob:
    dataset = TrainingDataset.objects.create(
        name="d", method="sft", records=RECORDS, record_count=1, sha256="0" * 64
    )
    return TrainingJob.objects.create(base_model=student, dataset=dataset, method="sft", **fields)


def stale(run: TeachingRun, **fields) -> None:
    TeachingRun.objects.filter(pk=run.pk).update(
        **{
            "status": "running",
            "lease": "old",
            "worker": "host:1",
            "attempts": 1,
            "heartbeat_at": timezone.now() - timedelta(minutes=5),
            **fields,
        }
    )


def test_it_requeues_a_run_whose_worker_died_and_never_requeues_its_training_job(
    run, models, dummy_tasks, django_capture_on_commit_callbacks
):
    # The round's job ran in the same dead process (claimed once; the run owns its retries).
    job = job_for(
        models[3],
        status="running",
        lease="job-lease",
        attempts=1,
        max_attempts=1,
        heartbeat_at=timezone.now() - timedelta(minutes=5),
    )
    stale(run)
    Round.objects.create(run=run, index=0, training_job=job)
    with django_capture_on_commit_callbacks(execute=True):
        assert recovery.recover_all() == {"training jobs": [job.pk], "teaching runs": [run.pk]}
    run.refresh_from_db()
    job.refresh_from_db()
    assert (run.status, run.lease) == ("queued", "")
    assert "stopped responding" in run.last_error
    assert job.status == "failed"
    # Only the run goes back to a worker; it resumes the job itself (see the tests below).
    assert [(r.task.name, r.task.queue_name, r.args) for r in dummy_tasks.results] == [
        ("run_teaching_run", "training", [run.pk])
    ]


def test_it_fails_a_run_that_used_its_attempts_and_keeps_a_live_one(run, dummy_tasks):
    stale(run, attempts=3)
    assert teaching.teaching_runs_recover() == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and "gave up after 3 attempts" in run.last_error

    TeachingRun.objects.filter(pk=run.pk).update(status="running", lease="new", heartbeat_at=timezone.now())
    assert teaching.teaching_runs_recover() == []


def test_it_claims_a_run_once(run):
    assert teaching.teaching_run_claim(run_id=run.pk) is not None
    assert teaching.teaching_run_claim(run_id=run.pk) is None
    assert teaching.teaching_run_work(run_id=run.pk) == "skipped"


def test_an_attempt_that_lost_its_lease_stops_and_writes_nothing(run, models):
    fakes = models[0]
    claimed, lease = teaching.teaching_run_claim(run_id=run.pk)
    TeachingRun.objects.filter(pk=run.pk).update(lease="another-attempt")
    teaching.teaching_run_execute(run=claimed, lease=lease)
    run.refresh_from_db()
    assert (run.status, run.lease, run.current_step) == ("running", "another-attempt", "")
    assert not run.rounds.exists()
    assert fakes["scripted-teacher"].calls == []


def test_a_crash_fails_the_run_instead_of_leaving_it_running(run, models):
    def broken(*args, **kwargs):
        raise RuntimeError("CUDA out of memory")

    models[0]["scripted-student"].generate = broken
    assert teaching.teaching_run_work(run_id=run.pk) == "failed"
    run.refresh_from_db()
    assert (run.status, run.lease) == ("failed", "")
    assert run.last_error == "RuntimeError: CUDA out of memory"


def test_a_database_outage_leaves_the_run_for_recovery_to_resume_not_failed(
    run, models, dummy_tasks, django_capture_on_commit_callbacks
):
    from django.db import OperationalError

    def outage(*args, **kwargs):
        raise OperationalError("terminating connection due to administrator command")

    real = models[0]["scripted-student"].generate
    models[0]["scripted-student"].generate = outage
    assert teaching.teaching_run_work(run_id=run.pk) == "running"  # not failed: the database's fault
    run.refresh_from_db()
    assert (run.status, run.last_error) == ("running", "")
    TeachingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=5))
    with django_capture_on_commit_callbacks(execute=True):
        assert teaching.teaching_runs_recover() == [run.pk]
    models[0]["scripted-student"].generate = real
    assert teaching.teaching_run_work(run_id=run.pk) == "succeeded"


class FakeTraining:
    """Stands in for training_job_run: marks the job succeeded with an adapter."""

    def __init__(self) -> None:
        self.ran: list[int] = []

    def __call__(self, *, job_id: int) -> str:
        self.ran.append(job_id)
        job = TrainingJob.objects.get(pk=job_id)
        assert job.status == "queued"
        adapter = Adapter.objects.create(
            base_model=job.base_model, version=len(self.ran), path=f"/a/{job_id}", method="sft"
        )
        TrainingJob.objects.filter(pk=job_id).update(status="succeeded", adapter=adapter)
        return "succeeded"


@pytest.fixture
def fake_training(monkeypatch):
    fake = FakeTraining()
    monkeypatch.setattr(teaching.training_jobs, "training_job_run", fake)
    return fake


def trained_run(run) -> TeachingRun:
    TeachingRun.objects.filter(pk=run.pk).update(train_config={"max_steps": 2, "lora_r": 4})
    run.refresh_from_db()
    return run


def test_it_makes_one_job_per_round_that_only_the_run_retries(run, fake_training):
    run = trained_run(run)
    path = teaching._train_fn(run)(RECORDS, 0, None)
    run.refresh_from_db()
    job = run.rounds.get(index=0).training_job
    assert path == job.adapter.path and fake_training.ran == [job.pk]
    assert job.max_attempts == 1 and job.config["max_steps"] == 2


def test_it_reuses_a_round_job_that_finished_before_an_interruption(run, models, fake_training):
    run = trained_run(run)
    adapter = Adapter.objects.create(base_model=models[3], version=9, path="/a/done", method="sft")
    job = job_for(models[3], status="succeeded", adapter=adapter)
    Round.objects.create(run=run, index=0, training_job=job)
    assert teaching._train_fn(run)(RECORDS, 0, None) == "/a/done"
    assert fake_training.ran == [] and TrainingJob.objects.count() == 1


def test_it_resumes_a_round_job_that_failed_with_its_worker(run, models, fake_training):
    run = trained_run(run)
    job = job_for(models[3], status="failed", attempts=1, max_attempts=1, last_error="worker died")
    Round.objects.create(run=run, index=0, training_job=job)
    path = teaching._train_fn(run)(RECORDS, 0, None)
    job.refresh_from_db()
    assert fake_training.ran == [job.pk] and path == job.adapter.path
    assert TrainingJob.objects.count() == 1 and job.last_error == ""


def test_it_fails_a_headless_run_whose_process_died_instead_of_queueing_it(run, dummy_tasks):
    stale(run, lease="")  # `manage.py teach` runs without a worker's lease
    assert teaching.teaching_runs_recover() == [run.pk]
    run.refresh_from_db()
    assert run.status == "failed" and "resume it" in run.last_error
    assert dummy_tasks.results == []


def test_a_crash_in_the_command_line_path_is_recorded_before_it_propagates(run, models):
    models[0]["scripted-teacher"].generate = lambda *a, **k: 1 / 0
    with pytest.raises(ZeroDivisionError):
        teaching.teaching_run_execute(run=run)
    run.refresh_from_db()
    assert run.status == "failed" and run.last_error.startswith("ZeroDivisionError")
