"""Teaching runs from the web: access, the start form, running through the task queue, cancel and
resume, explanations with ratings and edits, fine-tune now, escaping of model output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from django.urls import reverse

from tests.base import BaseTestCase
from tests.tutor.runs.helpers import form_data, make_models_and_course, scripted_models
from training.models import Adapter, LanguageModel, TrainingDataset, TrainingJob
from tutor.core.runs.state import RunConfig
from tutor.models import Course, Exercise, Round, RunExplanation, TeachingRun
from tutor.runs import selectors
from tutor.runs import services as teaching

DUMMY_TASKS = {
    "default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend", "QUEUES": ["default", "training"]}
}


class RunsTestCase(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _fakes(self, monkeypatch, settings):
        self.fakes = scripted_models(monkeypatch)
        self.settings = settings

    def setUp(self) -> None:
        super().setUp()
        self.course, self.teacher, self.student, _ = make_models_and_course()

    def create_run(self, **config) -> TeachingRun:
        return teaching.teaching_run_create(
            course=self.course,
            student=self.student,
            teacher=self.teacher,
            user=self.alice,
            train={"disabled": True},
            **{"rounds": 1, "plan_budget": 4, "explain_budget": 2, **config},
        )

    def run_to_end(self, **config) -> TeachingRun:
        run = self.create_run(**config)
        teaching.teaching_run_execute(run=run)
        run.refresh_from_db()
        assert run.status == "succeeded", run.last_error
        return run


class AccessTestCase(RunsTestCase):
    def urls(self, run: TeachingRun, x: RunExplanation) -> list[str]:
        return [
            reverse("runs:list"),
            reverse("runs:new"),
            reverse("runs:detail", args=[run.pk]),
            reverse("runs:explanations", args=[run.pk]),
            reverse("runs:explanation-edit", args=[run.pk, x.pk]),
        ]

    def test_it_sends_anonymous_visitors_to_the_login_page(self):
        run = self.run_to_end()
        for url in self.urls(run, run.explanations.first()):
            response = self.client.get(url)
            self.assertEqual(response.status_code, 302, url)
            self.assertIn(reverse("login"), response["Location"])

    def test_it_forbids_learners_every_page_and_action(self):
        run = self.run_to_end()
        x = run.explanations.first()
        self.client.force_login(self.bob)
        for url in self.urls(run, x):
            self.assertEqual(self.client.get(url).status_code, 403, url)
        for url in (
            reverse("runs:cancel", args=[run.pk]),
            reverse("runs:resume", args=[run.pk]),
            reverse("runs:fine-tune", args=[run.pk]),
            reverse("runs:explanation-rate", args=[run.pk, x.pk]),
        ):
            self.assertEqual(self.client.post(url, {"rating": "up"}).status_code, 403, url)
        x.refresh_from_db()
        self.assertIsNone(x.rating)
        self.assertFalse(TrainingJob.objects.exists())

    def test_it_shows_staff_the_runs_and_their_pages(self):
        run = self.run_to_end()
        self.client.force_login(self.alice)
        response = self.client.get(reverse("runs:list"))
        self.assertContains(response, f'id="run-row-{run.pk}"')
        response = self.client.get(reverse("runs:detail", args=[run.pk]))
        self.assertContains(response, f'ws-connect="/ws/tutor/runs/{run.pk}/"')
        self.assertContains(response, "Succeeded")
        self.assertContains(response, "add_1d")  # the per-skill table of the round
        self.assertEqual(self.client.get(reverse("runs:explanations", args=[run.pk])).status_code, 200)


class StartFormTestCase(RunsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)

    def post(self, **overrides):
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                reverse("runs:new"), form_data(self.course, self.student, self.teacher, **overrides)
            )

    def test_it_chooses_the_only_course_and_says_what_is_missing_before_a_run_can_start(self):
        response = self.client.get(reverse("runs:new"))
        self.assertEqual(response.context["form"].initial["course"], self.course.pk)
        self.assertNotContains(response, "Nothing to run yet")
        Course.objects.all().delete()
        LanguageModel.objects.all().delete()
        response = self.client.get(reverse("runs:new"))
        self.assertContains(response, "Nothing to run yet")
        self.assertContains(response, "manage.py import_course --pack arithmetic")
        self.assertContains(response, "manage.py bootstrap")

    def test_it_offers_the_default_models(self):
        self.student.is_default_student = True
        self.student.save()
        response = self.client.get(reverse("runs:new"))
        self.assertEqual(response.context["form"].initial["student"], self.student)

    def test_it_rejects_zero_rounds_and_saves_nothing(self):
        response = self.post(rounds=0)
        self.assertEqual(response.status_code, 200)
        self.assertTrue(response.context["form"].errors["rounds"])
        self.assertFalse(TeachingRun.objects.exists())

    def test_it_rejects_a_student_served_over_http(self):
        response = self.post(student=self.teacher.pk)
        self.assertIn("student", response.context["form"].errors)
        self.assertFalse(TeachingRun.objects.exists())

    def test_it_rejects_an_unknown_plan_and_a_missing_course(self):
        response = self.post(plan="greedy", course=None)
        errors = response.context["form"].errors
        self.assertIn("plan", errors)
        self.assertIn("course", errors)
        self.assertFalse(TeachingRun.objects.exists())

    def test_it_checks_training_settings_only_when_training(self):
        response = self.post(lora_r=0)
        self.assertIn("lora_r", response.context["form"].errors)
        self.settings.TASKS = DUMMY_TASKS
        response = self.post(train=None, lora_r=5)  # unchecked box: the training fields are kept but unused
        run = TeachingRun.objects.get()
        self.assertEqual(run.train_config, {"disabled": True})

    def test_it_creates_the_run_and_runs_it_through_the_task_queue(self):
        # The immediate task backend runs the task at enqueue: the whole web path, end to end.
        response = self.post(rounds=1, train=None)  # the scripted student cannot be fine-tuned
        run = TeachingRun.objects.get()
        self.assertRedirects(response, reverse("runs:detail", args=[run.pk]))
        self.assertEqual(run.status, "succeeded", run.last_error)
        self.assertEqual(run.attempts, 1)
        self.assertEqual(
            (run.created_by, run.config["explain_budget"], run.train_config),
            (self.alice, 2, {"disabled": True}),
        )
        self.assertEqual(run.lease, "")
        self.assertEqual([r.index for r in run.rounds.all()], [0])
        self.assertEqual(run.rounds.get().done_steps[-1], "reexamine")
        self.assertTrue(run.explanations.exists())  # mirrored from the state file
        self.assertEqual(self.fakes["scripted-teacher"].count("explain"), RunConfig().explain_samples)

    def test_it_queues_the_run_on_the_training_queue(self):
        self.settings.TASKS = DUMMY_TASKS
        from django_tasks import default_task_backend

        self.post()
        run = TeachingRun.objects.get()
        self.assertEqual(run.status, "queued")
        results = default_task_backend.results
        self.assertEqual([(r.task.queue_name, r.args) for r in results], [("training", [run.pk])])


class ControlTestCase(RunsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)
        self.settings.TASKS = DUMMY_TASKS

    def test_it_cancels_a_queued_run_at_once(self):
        run = self.create_run()
        self.client.post(reverse("runs:cancel", args=[run.pk]))
        run.refresh_from_db()
        self.assertEqual(run.status, "cancelled")

    def test_it_asks_a_running_run_and_its_training_job_to_stop(self):
        run = self.create_run()
        job = TrainingJob.objects.create(
            base_model=self.student,
            dataset=TrainingDataset.objects.create(
                name="d", method="sft", records=[], record_count=0, sha256="0" * 64
            ),
            method="sft",
            status="running",
        )
        TeachingRun.objects.filter(pk=run.pk).update(status="running")
        Round.objects.create(run=run, index=0, training_job=job)
        self.client.post(reverse("runs:cancel", args=[run.pk]))
        run.refresh_from_db()
        job.refresh_from_db()
        self.assertEqual((run.status, run.cancel_requested), ("running", True))
        self.assertTrue(job.cancel_requested)

    def test_it_resumes_a_cancelled_run_without_repeating_teacher_calls(self):
        run = self.create_run()

        def stop_after_explain(step, round_index, info):
            if step == "explain" and info.get("status") == "done":
                TeachingRun.objects.filter(pk=run.pk).update(cancel_requested=True)

        teaching.teaching_run_execute(run=run, progress=stop_after_explain)
        run.refresh_from_db()
        self.assertEqual(run.status, "cancelled")
        self.assertEqual(self.fakes["scripted-teacher"].count("explain"), RunConfig().explain_samples)

        self.settings.TASKS = {
            "default": {
                "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
                "QUEUES": ["default", "training"],
            }
        }
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(reverse("runs:resume", args=[run.pk]))
        run.refresh_from_db()
        self.assertEqual(run.status, "succeeded", run.last_error)
        self.assertEqual(
            self.fakes["scripted-teacher"].count("explain"), RunConfig().explain_samples
        )  # not paid for twice

    def test_it_offers_cancel_while_a_run_goes_and_resume_after_it_stopped(self):
        run = self.create_run()
        page = self.client.get(reverse("runs:detail", args=[run.pk]))
        self.assertContains(page, f'hx-post="{reverse("runs:cancel", args=[run.pk])}"')
        self.assertNotContains(page, reverse("runs:resume", args=[run.pk]))
        response = self.client.post(reverse("runs:cancel", args=[run.pk]), HTTP_HX_REQUEST="true")
        self.assertEqual(response["HX-Redirect"], reverse("runs:detail", args=[run.pk]))
        page = self.client.get(reverse("runs:detail", args=[run.pk]))
        self.assertContains(page, f'hx-post="{reverse("runs:resume", args=[run.pk])}"')
        self.assertNotContains(page, reverse("runs:cancel", args=[run.pk]))

    def test_it_cancels_and_resumes_runs_from_the_admin(self):
        run = self.create_run()
        url = reverse("admin:tutor_teachingrun_changelist")
        self.client.post(url, {"action": "cancel", "_selected_action": [run.pk]})
        run.refresh_from_db()
        self.assertEqual(run.status, "cancelled")
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(url, {"action": "resume", "_selected_action": [run.pk]})
        run.refresh_from_db()
        self.assertEqual(run.status, "queued")
        self.assertEqual(self.client.get(reverse("admin:tutor_runexplanation_changelist")).status_code, 200)

    def test_it_refuses_to_resume_a_running_run(self):
        run = self.create_run()
        TeachingRun.objects.filter(pk=run.pk).update(status="running")
        response = self.client.post(reverse("runs:resume", args=[run.pk]), follow=True)
        self.assertContains(response, "only a failed or cancelled run can be resumed")


class ExplanationsTestCase(RunsTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.client.force_login(self.alice)
        self.run = self.run_to_end(explain_budget=4)
        self.explanations = list(self.run.explanations.all())

    def test_it_mirrors_each_explanation_with_answers_score_and_verification(self):
        state = selectors.teaching_run_state_load(self.run)
        keys = [x.id for r in state.rounds for x in r.explanations]
        self.assertEqual([x.key for x in self.explanations], keys)
        x = self.explanations[0]
        item = Exercise.objects.get(key=x.item, skill__key=x.skill)
        self.assertEqual((x.question, x.gold_answer), (item.prompt, item.answer))
        self.assertIn("999999", x.student_answer)  # the scripted student's wrong answer
        self.assertTrue(x.answer_after and "999999" not in x.answer_after)
        self.assertTrue(x.passed_gate and x.score > 0)
        response = self.client.get(reverse("runs:explanations", args=[self.run.pk]))
        self.assertContains(response, "kept: the teacher model's text passed the checks (2 of 2 candidates)")
        self.assertContains(response, f"score <strong>{x.score:+.2f}</strong>")

    def test_it_syncs_idempotently_and_keeps_ratings(self):
        x = self.explanations[0]
        teaching.run_explanation_rate(explanation=x, rating=True, user=self.alice)
        state = selectors.teaching_run_state_load(self.run)
        self.assertEqual(teaching.teaching_run_explanations_sync(run=self.run, state=state), 0)
        x.refresh_from_db()
        self.assertTrue(x.rating)
        self.assertEqual(self.run.explanations.count(), len(self.explanations))

    def test_it_rates_with_htmx_and_returns_the_card(self):
        x = self.explanations[0]
        url = reverse("runs:explanation-rate", args=[self.run.pk, x.pk])
        response = self.client.post(url, {"rating": "down"}, HTTP_HX_REQUEST="true")
        self.assertContains(response, f'id="explanation-{x.pk}"')
        self.assertContains(response, "rejected by alice")
        x.refresh_from_db()
        self.assertEqual((x.rating, x.rated_by), (False, self.alice))
        self.client.post(url, {"rating": "clear"}, HTTP_HX_REQUEST="true")
        x.refresh_from_db()
        self.assertIsNone(x.rating)
        self.assertEqual(self.client.post(url, {"rating": "maybe"}).status_code, 400)

    def test_it_saves_an_edit_as_an_approval_and_refuses_exam_questions(self):
        x = self.explanations[0]
        url = reverse("runs:explanation-edit", args=[self.run.pk, x.pk])
        form = self.client.get(url, HTTP_HX_REQUEST="true")
        self.assertContains(form, "<textarea")
        exam = Exercise.objects.filter(split="exam").first().prompt
        response = self.client.post(
            url, {"text": f"Solution: as in {exam}\nAnswer: 3"}, HTTP_HX_REQUEST="true"
        )
        self.assertContains(response, "quotes an exam question")
        x.refresh_from_db()
        self.assertEqual((x.edited_text, x.rating), ("", None))

        response = self.client.post(
            url, {"text": "Mistake: none.\nSolution: add the ones.\nAnswer: 3"}, HTTP_HX_REQUEST="true"
        )
        self.assertContains(response, "(edited)")
        x.refresh_from_db()
        self.assertEqual(
            (x.edited_text, x.rating), ("Mistake: none.\nSolution: add the ones.\nAnswer: 3", True)
        )

    def test_it_escapes_model_output_everywhere_it_shows_it(self):
        x = self.explanations[0]
        RunExplanation.objects.filter(pk=x.pk).update(
            text="<script>alert('t')</script>\nAnswer: 1",
            student_answer="<img src=x onerror=alert(1)>",
            answer_after="<b>bold</b>",
        )
        for response in (
            self.client.get(reverse("runs:explanations", args=[self.run.pk])),
            self.client.get(
                reverse("runs:explanation-edit", args=[self.run.pk, x.pk]), HTTP_HX_REQUEST="true"
            ),
        ):
            html = response.content.decode()
            self.assertNotIn("<script>alert", html)
            self.assertIn("&lt;script&gt;alert(", html)
        html = self.client.get(reverse("runs:explanations", args=[self.run.pk])).content.decode()
        self.assertNotIn("<img src=x", html)
        self.assertNotIn("<b>bold</b>", html)

    def test_it_fine_tunes_now_on_approved_and_edited_explanations(self):
        self.settings.TASKS = DUMMY_TASKS
        up, down, other = self.explanations[0], self.explanations[1], self.explanations[2]
        same_item = RunExplanation.objects.create(
            run=self.run,
            key="r0-extra",
            round=0,
            item=up.item,
            skill=up.skill,
            split=up.split,
            text="Solution: muddled.\nAnswer: 0",
        )
        teaching.run_explanation_edit(
            explanation=up, text="Mistake: x.\nSolution: line up the digits.\nAnswer: 3", user=self.alice
        )
        teaching.run_explanation_rate(explanation=down, rating=False, user=self.alice)
        teaching.run_explanation_rate(explanation=same_item, rating=False, user=self.alice)
        teaching.run_explanation_rate(explanation=other, rating=True, user=self.alice)
        adapter = Adapter.objects.create(
            base_model=self.student, version=1, path="/adapters/run-latest", method="sft"
        )
        TeachingRun.objects.filter(pk=self.run.pk).update(adapter_path=adapter.path)

        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(reverse("runs:fine-tune", args=[self.run.pk]))
        job = TrainingJob.objects.get()
        self.assertRedirects(response, reverse("training:job", args=[job.pk]), fetch_redirect_response=False)
        self.assertEqual(
            (job.base_model, job.parent_adapter, job.method, job.status),
            (self.student, adapter, "sft", "queued"),
        )
        records = job.dataset.records
        self.assertEqual(sorted(r["meta"]["explanation"] for r in records), sorted([up.key, other.key]))
        edited = next(r for r in records if r["meta"]["explanation"] == up.key)
        self.assertEqual(edited["messages"][-1]["content"], "line up the digits.\nAnswer: 3")
        pairs = TrainingDataset.objects.get(method="dpo").records
        self.assertEqual(
            [(p["meta"]["chosen"], p["meta"]["rejected"]) for p in pairs], [(up.key, "r0-extra")]
        )
        self.run.refresh_from_db()
        self.assertEqual(self.run.feedback_jobs, [job.pk])
        page = self.client.get(reverse("runs:detail", args=[self.run.pk]))
        self.assertContains(page, reverse("training:job", args=[job.pk]))

    def test_two_fine_tunes_from_pages_opened_before_either_both_stay_listed(self):
        self.settings.TASKS = DUMMY_TASKS
        teaching.run_explanation_rate(explanation=self.explanations[0], rating=True, user=self.alice)
        first, second = TeachingRun.objects.get(pk=self.run.pk), TeachingRun.objects.get(pk=self.run.pk)
        job_1, _ = teaching.teaching_run_feedback_fine_tune(run=first, user=self.alice)
        job_2, _ = teaching.teaching_run_feedback_fine_tune(run=second, user=self.alice)  # a stale copy
        self.run.refresh_from_db()
        self.assertEqual(self.run.feedback_jobs, [job_1.pk, job_2.pk])
        self.assertEqual(second.feedback_jobs, [job_1.pk, job_2.pk])

    def test_it_says_what_to_do_when_nothing_is_approved(self):
        response = self.client.post(reverse("runs:fine-tune", args=[self.run.pk]), follow=True)
        self.assertContains(response, "No approved explanations yet")
        self.assertFalse(TrainingJob.objects.exists())

    def test_it_counts_only_what_fine_tune_now_would_train_on(self):
        x = self.explanations[0]
        probe = RunExplanation.objects.create(
            run=self.run,
            key="r0-old-probe",
            round=0,
            item=x.item,
            skill=x.skill,
            split="probe",
            text="Solution: add.\nAnswer: 3",
        )
        teaching.run_explanation_rate(explanation=probe, rating=True, user=self.alice)
        response = self.client.get(reverse("runs:explanations", args=[self.run.pk]))
        self.assertContains(response, "Fine-tune now on approved feedback (0)")
        self.assertContains(response, "a probe item: it measures the student, so it is never trained on")
        teaching.run_explanation_rate(explanation=x, rating=True, user=self.alice)
        response = self.client.get(reverse("runs:detail", args=[self.run.pk]))
        self.assertContains(response, "(1 approved)")

    def test_it_brings_ratings_and_edits_into_the_next_round(self):
        helped = [x for x in self.explanations if x.score and x.score > 0]
        rejected, edited = helped[0], helped[1]
        teaching.run_explanation_rate(explanation=rejected, rating=False, user=self.alice)
        teaching.run_explanation_edit(
            explanation=edited, text="Solution: HUMAN REWRITE.\nAnswer: 1", user=self.alice
        )
        self.settings.TASKS = {
            "default": {
                "BACKEND": "django_tasks.backends.immediate.ImmediateBackend",
                "QUEUES": ["default", "training"],
            }
        }
        with self.captureOnCommitCallbacks(execute=True):
            self.client.post(reverse("runs:resume", args=[self.run.pk]), {"extra_rounds": 1})
        self.run.refresh_from_db()
        self.assertEqual((self.run.status, self.run.config["rounds"]), ("succeeded", 2))
        records = selectors.teaching_run_state_load(self.run).rounds[1].sft_records
        by_explanation = {r["meta"].get("explanation"): r["messages"][-1]["content"] for r in records}
        self.assertNotIn(rejected.key, by_explanation)
        self.assertEqual(by_explanation[edited.key], "HUMAN REWRITE.\nAnswer: 1")


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.django_db
def test_it_trains_each_round_through_the_training_app_from_the_web(
    client, django_user_model, monkeypatch, tiny_model_dir, one_thread, django_capture_on_commit_callbacks
):
    """A small real run from the form: the scripted teacher, the tiny real student, a real LoRA job."""
    scripted_models(monkeypatch)
    course, teacher, _, tiny = make_models_and_course(tiny_model_dir)
    staff = django_user_model.objects.create_user("alice", password="pw", is_staff=True)
    client.force_login(staff)
    with django_capture_on_commit_callbacks(execute=True):  # the immediate backend runs the task at enqueue
        response = client.post(
            reverse("runs:new"), form_data(course, tiny, teacher, explain_budget=2, acceptance="always")
        )
    run = TeachingRun.objects.get()
    assert response.status_code == 302
    assert run.status == "succeeded", run.last_error
    job = run.rounds.get(index=0).training_job
    assert job.status == "succeeded" and job.max_attempts == 1
    assert run.adapter_path == job.adapter.path and (Path(run.adapter_path) / "adapter_config.json").is_file()
    page = client.get(reverse("runs:detail", args=[run.pk])).content.decode()
    assert reverse("training:job", args=[job.pk]) in page
    assert reverse("training:adapter-download", args=[job.adapter.pk]) in page
    trained = json.dumps(job.dataset.records)
    for prompt in Exercise.objects.filter(split="exam").values_list("prompt", flat=True):
        assert prompt not in trained
