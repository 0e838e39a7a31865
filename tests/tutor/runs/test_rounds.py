"""A run's rounds as ``Round`` rows: mirrored from the state file, linked to their training jobs,
shown read-only in the admin."""

from __future__ import annotations

import json
from unittest import mock

from django.urls import reverse

from tests.tutor.core.runs.fakes import LEGACY_RULES
from tests.tutor.runs.test_recovery import FakeTraining
from tests.tutor.runs.test_views import RunsTestCase
from training.models import TrainingDataset, TrainingJob
from tutor.core.runs.state import STEPS, RoundState, RunConfig, RunState
from tutor.models import Round, TeachingRun
from tutor.runs import live, selectors
from tutor.runs import services as teaching


def empty_dataset() -> TrainingDataset:
    return TrainingDataset.objects.create(name="d", method="sft", records=[], record_count=0, sha256="0" * 64)


class RoundSyncTestCase(RunsTestCase):
    def test_it_mirrors_each_round_of_the_state_after_a_run(self):
        run = self.run_to_end(rounds=2, exam_every_round=True)
        state = selectors.teaching_run_state_load(run)
        rows = list(run.rounds.all())
        self.assertEqual([r.index for r in rows], [0, 1])
        for row, rnd in zip(rows, state.rounds, strict=True):
            self.assertEqual(row.probe, rnd.probe_accuracy)
            self.assertEqual(row.exam, rnd.exam["per_skill"])
            self.assertEqual(row.base, rnd.exam["base_per_skill"])
            self.assertEqual(
                (row.accuracy, row.vs_base, row.agreement),
                (rnd.exam["accuracy"], rnd.exam["vs_base"], rnd.exam["agreement"]),
            )
            self.assertEqual(row.done_steps, list(STEPS))
            self.assertEqual((row.explained, row.sft_records), (len(rnd.explanations), len(rnd.sft_records)))
            # The exam's further measurements flow through; its bulky answers stay in the state file.
            self.assertEqual(row.extra["forgetting"], rnd.exam["forgetting"])
            self.assertNotIn("answers", row.extra)
            self.assertEqual(row.extra["general"]["accuracy"], rnd.exam["general"]["accuracy"])
            self.assertNotIn("answers", row.extra["general"])
        self.assertEqual(set(rows[0].probe), set(run.course.skills.values_list("key", flat=True)))
        self.assertEqual(teaching.teaching_run_rounds_sync(run=run, state=state), 0)  # idempotent
        self.client.force_login(self.alice)
        page = self.client.get(reverse("runs:detail", args=[run.pk]))
        self.assertContains(page, "General probe (16 questions outside the course)", count=2)

    def test_by_default_only_the_last_round_is_examined_and_the_page_says_so(self):
        run = self.run_to_end(rounds=2)
        first, last = run.rounds.all()
        self.assertIsNone(first.accuracy)
        self.assertIsNotNone(last.accuracy)
        self.client.force_login(self.alice)
        page = self.client.get(reverse("runs:detail", args=[run.pk]))
        self.assertContains(page, "General probe (16 questions outside the course)", count=2)
        self.assertContains(page, "Exam accuracy <strong>", count=1)
        self.assertContains(page, "Exam not asked this round", count=1)

    def test_it_keeps_unknown_summary_keys_in_extra_without_a_migration(self):
        run = self.create_run()
        state = RunState(
            config=RunConfig(rounds=1),
            course="mini",
            teacher="t",
            student="s",
            rounds=[
                RoundState(
                    index=0,
                    done_steps=["diagnose"],
                    probe_accuracy={"add_1d": 0.5},
                    exam={"new_probe": {"accuracy": 0.3, "answers": {"g1": {}}}, "answers": {"e1": {}}},
                )
            ],
        )
        self.assertEqual(teaching.teaching_run_rounds_sync(run=run, state=state), 1)
        row = run.rounds.get()
        self.assertEqual(row.extra["new_probe"], {"accuracy": 0.3})  # answers stay in the state file
        self.assertNotIn("answers", json.dumps(row.extra))
        self.assertEqual((row.accuracy, row.train_note, row.adapter_path), (None, "", ""))

    def test_it_links_each_round_to_a_job_that_continues_the_previous_rounds_adapter(self):
        fake = FakeTraining()  # succeeds at once with an adapter per job
        with mock.patch.object(teaching.training_jobs, "training_job_run", fake):
            run = self.create_run(rounds=2, **LEGACY_RULES)  # each round continues the last adapter
            TeachingRun.objects.filter(pk=run.pk).update(train_config={"max_steps": 2, "lora_r": 4})
            run.refresh_from_db()
            teaching.teaching_run_execute(run=run)
        run.refresh_from_db()
        self.assertEqual(run.status, "succeeded", run.last_error)
        first, second = run.rounds.select_related("training_job__adapter", "training_job__parent_adapter")
        self.assertEqual(fake.ran, [first.training_job_id, second.training_job_id])
        self.assertIsNone(first.training_job.parent_adapter)
        self.assertEqual(second.training_job.parent_adapter, first.training_job.adapter)
        self.assertEqual(second.training_job.config["parent_adapter"], first.adapter_path)
        self.assertEqual(
            (first.adapter_path, second.adapter_path),
            (first.training_job.adapter.path, second.training_job.adapter.path),
        )
        self.assertEqual(run.adapter_path, second.adapter_path)
        self.client.force_login(self.alice)
        page = self.client.get(reverse("runs:detail", args=[run.pk])).content.decode()
        for row in (first, second):
            self.assertIn(reverse("training:job", args=[row.training_job_id]), page)

    def test_it_shows_the_latest_examined_round_in_the_list_and_every_round_in_the_charts(self):
        run = self.create_run(rounds=3)
        Round.objects.create(
            run=run, index=0, done_steps=list(STEPS), probe={"add_1d": 0.25}, accuracy=0.5, base_accuracy=0.25
        )
        Round.objects.create(run=run, index=1, done_steps=["diagnose"], probe={"add_1d": 0.75})
        self.client.force_login(self.alice)
        self.assertContains(
            self.client.get(reverse("runs:list")), '50% <span class="hint">(base 25%)</span>', html=False
        )
        chart = json.loads(live.teaching_run_context(run)["chart_json"])
        self.assertEqual(
            (chart["rounds"], chart["probe"]["add_1d"], chart["exam"], chart["base"]),
            ([1, 2], [0.25, 0.75], [0.5, None], [0.25, None]),
        )

    def test_it_cancels_the_running_training_job_of_a_round(self):
        run = self.create_run()
        TeachingRun.objects.filter(pk=run.pk).update(status="running")
        job = TrainingJob.objects.create(
            base_model=self.student, dataset=empty_dataset(), method="sft", status="running"
        )
        Round.objects.create(run=run, index=0, training_job=job)
        teaching.teaching_run_cancel(run=run)
        job.refresh_from_db()
        self.assertTrue(job.cancel_requested)


class RoundAdminTestCase(RunsTestCase):
    def test_it_shows_the_rounds_read_only_with_links_to_their_training_jobs(self):
        run = self.run_to_end()
        job = TrainingJob.objects.create(
            base_model=self.student, dataset=empty_dataset(), method="sft", status="succeeded"
        )
        Round.objects.filter(run=run, index=0).update(training_job=job)
        self.client.force_login(self.alice)
        page = self.client.get(reverse("admin:tutor_teachingrun_change", args=[run.pk]))
        self.assertContains(page, f'href="{reverse("admin:training_trainingjob_change", args=[job.pk])}"')
        self.assertContains(page, "forgetting")  # the extra column
        self.assertNotContains(page, 'name="rounds-0-index"')  # read-only: no form fields
        self.assertNotContains(page, 'id="rounds-empty"')  # and no row to add
