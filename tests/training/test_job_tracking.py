"""Experiment tracking: TEACHLOOP_REPORT_TO checked at startup, recorded on the job with its run name,
a missing tracker package named, the tensorboard folder on the job page."""

from __future__ import annotations

import importlib.util
import runpy
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from tests.training.test_jobs import JobTestCase
from training import jobs
from training.core.config import REPORTERS, TENSORBOARD_DIRNAME
from training.models import TrainingJob

SETTINGS_ROOT = Path(__file__).resolve().parents[2] / "teachloop" / "settings.py"


class ReportToTestCase(JobTestCase):
    def load_settings(self, monkeypatch, value: str) -> dict:
        monkeypatch.setenv("TEACHLOOP_REPORT_TO", value)
        return runpy.run_path(str(SETTINGS_ROOT))

    @pytest.fixture(autouse=True)
    def _env(self, monkeypatch, tmp_path):
        self.monkeypatch = monkeypatch
        monkeypatch.setenv("TEACHLOOP_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("SECRET_KEY", "test")

    def test_it_reads_the_setting_and_refuses_anything_else_at_startup(self):
        self.assertEqual(runpy.run_path(str(SETTINGS_ROOT))["TEACHLOOP_REPORT_TO"], "none")
        for value in ("tensorboard", "mlflow", "wandb", "none"):
            self.assertEqual(self.load_settings(self.monkeypatch, value)["TEACHLOOP_REPORT_TO"], value)
        with self.assertRaisesMessage(
            ImproperlyConfigured,
            "TEACHLOOP_REPORT_TO must be one of none, tensorboard, mlflow, wandb, got 'comet'",
        ):
            self.load_settings(self.monkeypatch, "comet")

    def test_a_job_whose_trackers_package_is_missing_fails_naming_it(self):
        reporter = next(
            (
                name
                for name, packages in REPORTERS.items()
                if packages and all(importlib.util.find_spec(p) is None for p in packages)
            ),
            None,
        )
        if reporter is None:
            pytest.skip("every reporter's package is installed here")
        job = self.create_job()
        with self.settings(TEACHLOOP_REPORT_TO=reporter):
            self.assertEqual(jobs.training_job_run(job_id=job.pk), "failed")
        job.refresh_from_db()
        self.assertIn(f"pip install {REPORTERS[reporter][0]}", job.last_error)
        self.assertEqual(job.config["report_to"], reporter)
        self.assertEqual(job.config["run_name"], f"teachloop-job-{jobs.job_dir(job).name}")
        self.client.force_login(self.alice)
        page = self.client.get(reverse("training:job", args=[job.pk]))
        self.assertContains(page, f"pip install {REPORTERS[reporter][0]}")
        self.assertContains(page, job.config["run_name"])

    def test_the_job_page_names_the_tensorboard_folder_and_command(self):
        job = self.create_job()
        job.config = {**job.config, "report_to": "tensorboard", "run_name": jobs.job_run_name(job)}
        job.save(update_fields=["config"])
        self.client.force_login(self.alice)
        page = self.client.get(reverse("training:job", args=[job.pk]))
        self.assertNotContains(page, "Experiment tracking")  # no folder yet: nothing to point at
        folder = jobs.job_dir(job) / TENSORBOARD_DIRNAME
        folder.mkdir(parents=True)
        page = self.client.get(reverse("training:job", args=[job.pk]))
        self.assertContains(page, f"<code>{folder}</code>", html=False)
        self.assertContains(page, f"tensorboard --logdir {folder}")
        self.client.force_login(self.bob)
        TrainingJob.objects.filter(pk=job.pk).update(created_by=self.bob)
        self.assertNotContains(self.client.get(reverse("training:job", args=[job.pk])), str(folder))
