"""Training jobs: datasets frozen on creation, claiming, cancel/retry, recovery, pages."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from unittest import mock

import pytest
from django.core.management import call_command
from django.db import OperationalError
from django.urls import reverse
from django.utils import timezone

from tests.base import BaseTestCase
from training import jobs
from training.models import Adapter, LanguageModel, TrainingDataset, TrainingJob

CHAT = [
    {
        "messages": [
            {"role": "user", "content": f"What is {i}+{i}?"},
            {"role": "assistant", "content": f"{i}+{i} = {2 * i}"},
        ]
    }
    for i in range(8)
]
TINY_HYPER = {"max_steps": 4, "batch_size": 4, "learning_rate": 5e-3, "lora_r": 4, "checkpoint_every": 2}


def jsonl(records) -> str:
    return "\n".join(json.dumps(r) for r in records) + "\n"


class JobTestCase(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _tiny(self, tiny_model_dir, settings):
        self.tiny_dir = tiny_model_dir
        # Training tests run jobs explicitly (or through the CLI); nothing runs at enqueue.
        settings.TASKS = {
            "default": {
                "BACKEND": "django_tasks.backends.dummy.DummyBackend",
                "QUEUES": ["default", "training"],
            }
        }

    def setUp(self) -> None:
        super().setUp()
        self.model = LanguageModel.objects.create(name="tiny", is_student=True, source=str(self.tiny_dir))
        self.dataset = jobs.dataset_create(name="sums", method="sft", records=CHAT, user=self.alice)

    def create_job(self, **hyper) -> TrainingJob:
        with self.captureOnCommitCallbacks(execute=True):
            return jobs.training_job_create(
                base_model=self.model, dataset=self.dataset, user=self.alice, **{**TINY_HYPER, **hyper}
            )


class DatasetTestCase(JobTestCase):
    def test_it_freezes_records_when_created(self):
        records = [dict(r) for r in CHAT]
        dataset = jobs.dataset_create(name="copy", method="sft", records=records)
        records[0]["messages"][1]["content"] = "changed later"
        dataset.refresh_from_db()
        self.assertEqual(dataset.records[0]["messages"][1]["content"], "0+0 = 0")
        self.assertEqual(dataset.record_count, 8)
        self.assertEqual(len(dataset.sha256), 64)

    def test_it_lists_every_bad_line_of_an_upload_and_saves_nothing(self):
        self.client.force_login(self.alice)
        text = (
            jsonl(CHAT[:2])
            + "{not json\n"
            + json.dumps({"messages": [{"role": "user", "content": "hi"}]})
            + "\n"
        )
        upload = io.BytesIO(text.encode())
        upload.name = "bad.jsonl"
        response = self.client.post(
            reverse("training:dataset-upload"), {"name": "bad", "method": "sft", "file": upload}
        )
        self.assertContains(response, "2 bad line(s); nothing was saved")
        lines = [line for line, _ in response.context["line_errors"]]
        self.assertEqual(lines, [3, 4])
        self.assertFalse(TrainingDataset.objects.filter(name="bad").exists())
        self.assertFalse(TrainingJob.objects.exists())

    def test_it_accepts_a_good_upload_and_shows_it_before_offering_to_fine_tune(self):
        self.client.force_login(self.alice)
        upload = io.BytesIO(jsonl(CHAT).encode())
        upload.name = "good.jsonl"
        response = self.client.post(
            reverse("training:dataset-upload"), {"name": "good", "method": "sft", "file": upload}
        )
        dataset = TrainingDataset.objects.get(name="good")
        self.assertRedirects(response, reverse("training:dataset", args=[dataset.pk]))
        self.assertContains(self.client.get(response["Location"]), f"fine-tune/?dataset={dataset.pk}")

    def test_the_dataset_page_shows_the_records_through_the_chat_template_and_their_lengths(self):
        self.client.force_login(self.alice)
        url = reverse("training:dataset", args=[self.dataset.pk])
        page = self.client.get(url)
        self.assertContains(page, f"?part=preview&amp;model={self.model.pk}")  # filled in by htmx
        preview = self.client.get(url, {"part": "preview", "model": self.model.pk})
        self.assertContains(preview, "train / eval split")
        self.assertContains(preview, CHAT[0]["messages"][0]["content"])  # a record, as rendered
        self.assertEqual(
            sum(int(n) for n in re.findall(r'data-count="(\d+)"', preview.content.decode())), len(CHAT)
        )

    def test_a_model_that_cannot_read_the_dataset_is_a_line_on_the_page(self):
        broken = LanguageModel.objects.create(name="gone", is_student=True, source="/no/such/folder")
        self.client.force_login(self.alice)
        preview = self.client.get(
            reverse("training:dataset", args=[self.dataset.pk]), {"part": "preview", "model": broken.pk}
        )
        self.assertContains(preview, "gone could not read the dataset")

    def test_it_downloads_the_records_as_chat_jsonl_for_staff_only(self):
        url = reverse("training:dataset-download", args=[self.dataset.pk])
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(url).status_code, 403)
        self.assertEqual(
            self.client.get(reverse("training:dataset", args=[self.dataset.pk])).status_code, 403
        )
        self.client.force_login(self.alice)
        response = self.client.get(url)
        lines = b"".join(response.streaming_content).decode().splitlines()
        self.assertEqual([json.loads(line) for line in lines], CHAT)
        self.assertIn("attachment", response["Content-Disposition"])

    def test_it_keeps_learners_out_of_uploads(self):
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(reverse("training:dataset-upload")).status_code, 403)


class CreateJobTestCase(JobTestCase):
    def test_it_creates_and_enqueues_a_job_from_the_form(self):
        self.client.force_login(self.alice)
        with self.captureOnCommitCallbacks(execute=True):
            response = self.client.post(
                reverse("training:fine-tune"),
                {
                    "base_model": self.model.pk,
                    "dataset": self.dataset.pk,
                    "learning_rate": "0.001",
                    "num_epochs": "1",
                    "max_steps": "3",
                    "batch_size": "2",
                    "lora_r": "4",
                },
            )
        job = TrainingJob.objects.get()
        self.assertRedirects(response, reverse("training:job", args=[job.pk]))
        self.assertEqual(job.status, "queued")
        self.assertTrue(job.task_id)
        self.assertEqual((job.config["max_steps"], job.config["lora_r"]), (3, 4))

    def test_the_form_starts_with_the_only_model_and_dataset_chosen(self):
        self.client.force_login(self.alice)
        form = self.client.get(reverse("training:fine-tune")).context["form"]
        self.assertEqual(
            (form["base_model"].value(), form["dataset"].value()), (self.model.pk, self.dataset.pk)
        )
        other = LanguageModel.objects.create(name="other", is_student=True, source="/m2")
        form = self.client.get(reverse("training:fine-tune")).context["form"]
        self.assertIsNone(form["base_model"].value())  # two to choose from, neither the default student
        LanguageModel.objects.filter(pk=other.pk).update(is_default_student=True)
        form = self.client.get(reverse("training:fine-tune")).context["form"]
        self.assertEqual(form["base_model"].value(), other.pk)

    def test_it_refuses_learners(self):
        self.client.force_login(self.bob)
        response = self.client.post(reverse("training:fine-tune"), {"base_model": self.model.pk})
        self.assertEqual(response.status_code, 403)
        self.assertFalse(TrainingJob.objects.exists())

    def test_it_refuses_to_fine_tune_a_served_model(self):
        served = LanguageModel.objects.create(
            name="served", is_teacher=True, backend="openai", source="m", base_url="http://x:1/v1"
        )
        from django.core.exceptions import ValidationError

        with self.assertRaisesMessage(ValidationError, "only local models"):
            jobs.training_job_create(base_model=served, dataset=self.dataset)

    def test_it_rejects_bad_hyper_parameters_clearly(self):
        from django.core.exceptions import ValidationError

        with self.assertRaisesMessage(ValidationError, "learning_rate"):
            jobs.training_job_create(base_model=self.model, dataset=self.dataset, learning_rate=-1)


class RunJobTestCase(JobTestCase):
    def test_it_trains_an_adapter_and_records_every_step(self):
        job = self.create_job()
        self.assertEqual(jobs.training_job_run(job_id=job.pk), "succeeded")
        job.refresh_from_db()
        self.assertEqual((job.status, job.step, job.total_steps, job.attempts), ("succeeded", 4, 4, 1))
        self.assertEqual(list(job.metrics.values_list("step", flat=True)), [1, 2, 3, 4])
        self.assertEqual(job.adapter.version, 1)
        self.assertTrue((__import__("pathlib").Path(job.adapter.path) / "adapter_config.json").is_file())
        self.assertIn("succeeded", job.events[-1]["message"])

    def test_it_never_runs_a_job_twice(self):
        job = self.create_job()
        self.assertIsNotNone(jobs.training_job_claim(job_id=job.pk))
        self.assertIsNone(jobs.training_job_claim(job_id=job.pk))
        self.assertEqual(jobs.training_job_run(job_id=job.pk), "skipped")

    def test_it_cancels_a_queued_job_at_once(self):
        job = jobs.training_job_cancel(job=self.create_job())
        self.assertEqual(job.status, "cancelled")
        self.assertEqual(jobs.training_job_run(job_id=job.pk), "skipped")

    def test_it_stops_a_running_job_when_cancelled(self):
        job = self.create_job(max_steps=50)

        def cancel_at_step_2(event):
            if event.step == 2:
                TrainingJob.objects.filter(pk=job.pk).update(cancel_requested=True)

        status = jobs.training_job_run(job_id=job.pk, on_event=cancel_at_step_2)
        job.refresh_from_db()
        self.assertEqual(status, "cancelled")
        self.assertLessEqual(job.step, 4)

    def test_it_continues_from_the_previous_adapter(self):
        first = self.create_job()
        jobs.training_job_run(job_id=first.pk)
        first.refresh_from_db()
        with self.captureOnCommitCallbacks(execute=True):
            second = jobs.training_job_create(
                base_model=self.model, dataset=self.dataset, parent_adapter=first.adapter, **TINY_HYPER
            )
        self.assertEqual(jobs.training_job_run(job_id=second.pk), "succeeded")
        second.refresh_from_db()
        self.assertEqual(second.adapter.version, 2)
        self.assertEqual([a.version for a in second.adapter.lineage], [2, 1])

    def test_it_downloads_an_adapter_as_a_zip(self):
        job = self.create_job()
        jobs.training_job_run(job_id=job.pk)
        job.refresh_from_db()
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:adapter-download", args=[job.adapter.pk]))
        import zipfile

        names = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))).namelist()
        self.assertIn("tiny-v1/adapter_config.json", names)
        self.assertIn("tiny-v1/adapter_model.safetensors", names)

    def test_a_job_of_a_reset_database_never_shares_a_folder_with_an_old_job_of_the_same_id(self):
        job = self.create_job()
        folder = jobs.job_dir(job)
        (folder / "checkpoints").mkdir(parents=True)  # left by the old job
        TrainingJob.objects.all().delete()
        again = self.create_job()
        TrainingJob.objects.filter(pk=again.pk).update(id=job.pk)  # the reset database reuses the id
        again = TrainingJob.objects.get(pk=job.pk)
        self.assertNotEqual(jobs.job_dir(again), folder)
        self.assertEqual(jobs.job_dir(again), jobs.job_dir(TrainingJob.objects.get(pk=job.pk)))  # stable
        self.assertEqual(jobs.training_job_run(job_id=again.pk), "succeeded")


class RecoverJobTestCase(JobTestCase):
    def test_it_requeues_a_job_whose_worker_stopped(self):
        job = self.create_job()
        jobs.training_job_claim(job_id=job.pk)
        TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(jobs.training_jobs_recover(), [job.pk])
        job.refresh_from_db()
        self.assertEqual(job.status, "queued")
        self.assertIn("re-queued", job.events[-1]["message"])
        self.assertEqual(jobs.training_job_run(job_id=job.pk), "succeeded")
        job.refresh_from_db()
        self.assertEqual(job.attempts, 2)

    def test_it_fails_a_job_that_keeps_losing_its_worker(self):
        job = self.create_job()
        TrainingJob.objects.filter(pk=job.pk).update(max_attempts=1)
        jobs.training_job_claim(job_id=job.pk)
        TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
        jobs.training_jobs_recover()
        job.refresh_from_db()
        self.assertEqual(job.status, "failed")
        self.assertIn("stopped responding", job.last_error)

    def test_a_database_outage_mid_job_loses_a_chart_point_not_the_job(self):
        job = self.create_job()
        record = jobs._Progress._record

        def unavailable_at_step_2(progress, event):
            if event.step == 2:
                raise OperationalError("terminating connection due to administrator command")
            record(progress, event)

        with mock.patch.object(jobs._Progress, "_record", unavailable_at_step_2):
            self.assertEqual(jobs.training_job_run(job_id=job.pk), "succeeded")
        job.refresh_from_db()
        self.assertEqual((job.status, job.attempts), ("succeeded", 1))
        self.assertEqual(list(job.metrics.values_list("step", flat=True)), [1, 3, 4])

    def test_a_job_the_database_interrupts_is_resumed_by_recovery_not_failed(self):
        job = self.create_job()
        lost = OperationalError("the connection is lost")
        with mock.patch("training.core.trainer.train", side_effect=lost):
            self.assertEqual(jobs.training_job_run(job_id=job.pk), "interrupted")
        job.refresh_from_db()
        self.assertEqual((job.status, job.last_error), ("running", ""))  # not failed for the database's fault
        TrainingJob.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
        with self.captureOnCommitCallbacks(execute=True):
            self.assertEqual(jobs.training_jobs_recover(), [job.pk])
        self.assertEqual(jobs.training_job_run(job_id=job.pk), "succeeded")

    def test_it_leaves_live_jobs_alone(self):
        job = self.create_job()
        jobs.training_job_claim(job_id=job.pk)
        self.assertEqual(jobs.training_jobs_recover(), [])


class TrainCommandTestCase(JobTestCase):
    def test_it_trains_from_a_jsonl_file_and_prints_the_adapter_path(self):
        path = self.tiny_dir.parent / "cli.jsonl"
        path.write_text(jsonl(CHAT))
        out, err = io.StringIO(), io.StringIO()
        call_command(
            "train",
            "--student",
            "tiny",
            "--data",
            str(path),
            "--max-steps",
            "2",
            "--lora-r",
            "4",
            stdout=out,
            stderr=err,
        )
        adapter = Adapter.objects.get()
        self.assertEqual(out.getvalue().strip().splitlines()[-1], adapter.path)

    def test_it_reports_bad_lines_and_trains_nothing(self):
        from django.core.management.base import CommandError

        path = self.tiny_dir.parent / "bad.jsonl"
        path.write_text(jsonl(CHAT[:1]) + "oops\n")
        with self.assertRaisesMessage(CommandError, "line 2"):
            call_command("train", "--student", "tiny", "--data", str(path))
        self.assertFalse(TrainingJob.objects.exists())


class JobPagesTestCase(JobTestCase):
    def test_it_lists_jobs_with_progress(self):
        job = self.create_job()
        TrainingJob.objects.filter(pk=job.pk).update(status="running", step=2, total_steps=4)
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:jobs"))
        self.assertContains(response, f"#{job.pk}")
        self.assertContains(response, '<progress max="100" value="50">')

    def test_the_adapters_table_shows_the_final_training_loss(self):
        Adapter.objects.create(
            base_model=self.model,
            version=1,
            path="/adapters/x",
            method="sft",
            metrics={"final_loss": 0.123456},
        )
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:adapters"))
        self.assertContains(response, "<td>0.1235</td>", html=False)

    def test_it_shows_a_live_job_page(self):
        job = self.create_job()
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:job", args=[job.pk]))
        self.assertContains(response, f'ws-connect="/ws/training/jobs/{job.pk}/"')
        self.assertContains(response, "vendor/uPlot.iife.min.js")
        self.assertContains(response, "Cancel")

    def test_it_offers_only_the_action_that_fits_the_jobs_status_and_readable_event_times(self):
        job = self.create_job()
        TrainingJob.objects.filter(pk=job.pk).update(
            events=[{"at": "2026-12-05T18:51:58.123456+00:00", "message": "queued"}]
        )
        self.client.force_login(self.alice)
        url = reverse("training:job", args=[job.pk])
        cancel, retry = (
            reverse("training:job-cancel", args=[job.pk]),
            reverse("training:job-retry", args=[job.pk]),
        )
        page = self.client.get(url)
        self.assertContains(page, cancel)
        self.assertNotContains(page, retry)
        self.assertContains(
            page, '<time datetime="2026-12-05T18:51:58.123456+00:00">2026-12-05 18:51:58</time>'
        )
        for status, shown, hidden in (("succeeded", None, (cancel, retry)), ("failed", retry, (cancel,))):
            TrainingJob.objects.filter(pk=job.pk).update(status=status)
            page = self.client.get(url)
            if shown:
                self.assertContains(page, shown)
            for action in hidden:
                self.assertNotContains(page, action)
        self.assertEqual(
            self.client.post(retry, HTTP_HX_REQUEST="true")["HX-Redirect"], url
        )  # the live controls reload the page
        job.refresh_from_db()
        self.assertEqual(job.status, "queued")

    def test_it_shows_learners_only_their_own_jobs(self):
        job = self.create_job()
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(reverse("training:job", args=[job.pk])).status_code, 404)
        self.assertNotContains(self.client.get(reverse("training:jobs")), f"#{job.pk}")

    def test_it_lets_only_staff_cancel(self):
        job = self.create_job()
        self.client.force_login(self.bob)
        self.client.post(reverse("training:job-cancel", args=[job.pk]))
        job.refresh_from_db()
        self.assertEqual(job.status, "queued")
        self.client.force_login(self.alice)
        self.client.post(reverse("training:job-cancel", args=[job.pk]))
        job.refresh_from_db()
        self.assertEqual(job.status, "cancelled")

    def test_it_escapes_error_text_on_the_job_page(self):
        job = self.create_job()
        TrainingJob.objects.filter(pk=job.pk).update(status="failed", last_error="<script>x()</script>")
        self.client.force_login(self.alice)
        response = self.client.get(reverse("training:job", args=[job.pk]))
        self.assertNotContains(response, "<script>x()")
        self.assertContains(response, "&lt;script&gt;x()")


class JobAdminTestCase(JobTestCase):
    URL = reverse("admin:training_trainingjob_changelist")

    def act(self, action: str, job: TrainingJob):
        self.client.force_login(self.alice)
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(self.URL, {"action": action, "_selected_action": [job.pk]}, follow=True)

    def test_it_cancels_and_retries_from_the_admin(self):
        job = self.create_job()
        self.act("cancel", job)
        job.refresh_from_db()
        self.assertEqual(job.status, "cancelled")
        self.act("retry", job)
        job.refresh_from_db()
        self.assertEqual(job.status, "queued")
        self.assertEqual(jobs.training_job_run(job_id=job.pk), "succeeded")

    def test_it_refuses_to_retry_a_running_job(self):
        job = self.create_job()
        jobs.training_job_claim(job_id=job.pk)
        response = self.act("retry", job)
        self.assertContains(response, "only failed or cancelled jobs can be retried")

    def test_it_re_enqueues_only_queued_jobs(self):
        job = self.create_job()
        TrainingJob.objects.filter(pk=job.pk).update(task_id="")
        self.act("enqueue", job)
        job.refresh_from_db()
        self.assertTrue(job.task_id)


class TrainProcessesTestCase(JobTestCase):
    def test_it_trains_in_process_without_gpus(self):
        from unittest import mock

        with mock.patch("training.core.launch.num_gpus", return_value=0):
            self.assertEqual(jobs.train_processes(), 1)

    def test_it_uses_every_gpu_or_the_number_asked_for(self):
        from unittest import mock

        with mock.patch("training.core.launch.num_gpus", return_value=4):
            self.assertEqual(jobs.train_processes(), 4)
            with self.settings(TEACHLOOP_TRAIN_GPUS="2"):
                self.assertEqual(jobs.train_processes(), 2)
            with self.settings(TEACHLOOP_TRAIN_GPUS="8"):
                self.assertEqual(jobs.train_processes(), 4)

    def test_it_launches_a_distributed_run_on_a_multi_gpu_host(self):
        from unittest import mock

        from training.core.trainer import TrainResult

        job = self.create_job()
        calls = []

        def fake_run_distributed(config, records, output_dir, *, num_processes, **kwargs):
            calls.append(num_processes)
            return TrainResult(
                status="failed",
                reason="stopped by the test",
                adapter_dir=None,
                metrics={},
                last_checkpoint=None,
            )

        with (
            mock.patch("training.core.launch.num_gpus", return_value=2),
            mock.patch("training.core.launch.run_distributed", fake_run_distributed),
        ):
            self.assertEqual(jobs.training_job_run(job_id=job.pk), "failed")
        self.assertEqual(calls, [2])
        job.refresh_from_db()
        self.assertIn("training on 2 GPUs", " ".join(e["message"] for e in job.events))
