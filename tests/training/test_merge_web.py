"""Merging an adapter from the Adapters page: a background merge, one at a time, reused while
unchanged, failures in one line, and the merged folder streamed as a zip."""

from __future__ import annotations

import io
import json
import os
import shutil
import warnings
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import torch
from asgiref.sync import async_to_sync
from django.conf import settings
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from tests.base import BaseTestCase
from tests.conftest import IMMEDIATE_TASKS
from tests.tiny_model import build_tiny_lora
from training import shipping
from training.core.merge import MERGE_RECORD
from training.models import Adapter, AdapterMerge, LanguageModel

DUMMY_TASKS = {
    "default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend", "QUEUES": ["default", "training"]}
}


@pytest.fixture(scope="module")
def tiny_lora(tiny_model_dir, tmp_path_factory) -> Path:
    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("tiny-lora"))


def fake_merge(adapter, base, out, **kwargs) -> Path:
    """Stands in for the core: a folder with a config, written whole like the core's."""
    out = Path(out)
    out.mkdir(parents=True)
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"\0" * 1000)
    return out


class MergeWebTestCase(BaseTestCase):
    @pytest.fixture(autouse=True)
    def _tiny(self, tiny_model_dir, tiny_lora, settings, tmp_path):
        # Nothing runs at enqueue unless a test says so.
        settings.TASKS = DUMMY_TASKS
        self.tiny_dir, self.tmp = tiny_model_dir, tmp_path
        # The adapter's own copy, under the data folder like a trained one: tests may change it.
        self.lora = Path(
            shutil.copytree(tiny_lora, Path(settings.TEACHLOOP_DATA_DIR) / "jobs" / "1" / "adapter")
        )

    def setUp(self) -> None:
        super().setUp()
        self.model = LanguageModel.objects.create(name="tiny", is_student=True, source=str(self.tiny_dir))
        self.adapter = Adapter.objects.create(
            base_model=self.model, version=1, path=str(self.lora), method="sft"
        )
        self.client.force_login(self.alice)

    def post_merge(self, adapter: Adapter | None = None, follow: bool = False):
        with self.captureOnCommitCallbacks(execute=True):
            return self.client.post(
                reverse("training:adapter-merge", args=[(adapter or self.adapter).pk]), follow=follow
            )

    def test_it_queues_a_merge_from_the_adapters_page(self):
        page = self.client.get(reverse("training:adapters"))
        self.assertContains(page, f'action="{reverse("training:adapter-merge", args=[self.adapter.pk])}"')
        self.assertContains(page, "csrfmiddlewaretoken")

        response = self.post_merge()

        self.assertEqual(response["Location"], f"{reverse('training:adapters')}#adapter-{self.adapter.pk}")
        merge = AdapterMerge.objects.get()
        self.assertEqual(
            (merge.adapter, merge.status, merge.created_by), (self.adapter, "queued", self.alice)
        )
        self.assertTrue(merge.task_id)
        self.assertEqual(Path(merge.out_dir).parent, Path(settings.TEACHLOOP_DATA_DIR) / "merged")
        page = self.client.get(reverse("training:adapters"))
        self.assertContains(page, "Merging tiny v1 into tiny in the background.")
        # While it is queued the cell polls for its state and offers no second button.
        self.assertContains(
            page, f'hx-get="{reverse("training:adapter-merge-state", args=[self.adapter.pk])}"'
        )
        self.assertNotContains(page, f'action="{reverse("training:adapter-merge", args=[self.adapter.pk])}"')

    def test_it_refuses_learners_and_asks_visitors_to_sign_in(self):
        url = reverse("training:adapter-merge", args=[self.adapter.pk])
        self.client.force_login(self.bob)
        self.assertEqual(self.client.post(url).status_code, 403)
        self.assertEqual(
            self.client.get(reverse("training:adapter-merge-state", args=[self.adapter.pk])).status_code, 403
        )
        self.client.logout()
        self.assertTrue(self.client.post(url)["Location"].startswith(reverse("login")))
        self.client.force_login(self.alice)
        self.assertEqual(self.client.get(url).status_code, 405)
        self.assertFalse(AdapterMerge.objects.exists())

    def test_a_second_click_while_a_merge_is_queued_or_running_does_not_queue_another(self):
        self.post_merge()
        response = self.post_merge(follow=True)
        self.assertContains(response, "tiny v1 is already being merged (queued).")
        AdapterMerge.objects.update(status="running", heartbeat_at=timezone.now())
        response = self.post_merge(follow=True)
        self.assertContains(response, "tiny v1 is already being merged (running).")
        self.assertEqual(AdapterMerge.objects.count(), 1)

    def test_a_finished_merge_is_reused_until_the_adapter_changes(self):
        self.post_merge()
        merge = AdapterMerge.objects.get()
        fake_merge(None, None, merge.out_dir)
        AdapterMerge.objects.update(status="succeeded")

        response = self.post_merge(follow=True)
        self.assertContains(response, "tiny v1 is already merged and unchanged since: download it below.")
        self.assertEqual(AdapterMerge.objects.count(), 1)

        weights = self.lora / "adapter_model.safetensors"
        later = weights.stat().st_mtime_ns + 10**9
        os.utime(weights, ns=(later, later))  # the adapter was trained further, or replaced
        self.post_merge()
        self.assertEqual(AdapterMerge.objects.count(), 2)
        self.assertEqual(AdapterMerge.objects.first().status, "queued")

        # A changed chat template changes what the merge writes: merged again too.
        AdapterMerge.objects.filter(status="queued").delete()
        self.model.chat_template = "{{ messages }}"
        self.model.save()
        self.post_merge()
        self.assertEqual(AdapterMerge.objects.filter(status="queued").count(), 1)

    def test_a_newer_merge_deletes_the_folder_of_the_one_it_replaces(self):
        self.post_merge()
        first = AdapterMerge.objects.get()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(shipping, "merge_adapter", fake_merge)
            self.assertEqual(shipping.adapter_merge_run(merge_id=first.pk), "succeeded")
            first.refresh_from_db()
            self.assertEqual(first.size_bytes, 1002)
            AdapterMerge.objects.filter(pk=first.pk).update(stamp="before the adapter changed")
            self.post_merge()
            second = AdapterMerge.objects.exclude(pk=first.pk).get()
            self.assertEqual(shipping.adapter_merge_run(merge_id=second.pk), "succeeded")
            self.assertEqual(
                shipping.adapter_merge_run(merge_id=second.pk), "skipped"
            )  # a duplicate delivery
        self.assertFalse(Path(first.out_dir).exists())
        self.assertTrue((Path(second.out_dir) / "config.json").is_file())
        first.refresh_from_db()
        self.assertEqual((first.out_dir, first.error), ("", f"replaced by merge {second.pk}"))

    def test_it_merges_in_the_background_and_streams_the_folder_as_a_zip(self):
        with self.settings(TASKS=IMMEDIATE_TASKS):  # the task runs when the request commits
            self.post_merge()
        merge = AdapterMerge.objects.get()
        self.assertEqual(merge.status, "succeeded", merge.error)
        out = Path(merge.out_dir)
        self.assertEqual(json.loads((out / MERGE_RECORD).read_text())["adapter"], str(self.lora))
        self.assertFalse((out / "adapter_config.json").exists())
        self.assertGreater(merge.size_bytes, 0)
        self.assertEqual(sorted(p.name for p in out.parent.iterdir()), [out.name])  # no temporary folder
        page = self.client.get(reverse("training:adapters"))
        download = reverse("training:merge-download", args=[merge.pk])
        self.assertContains(page, f'href="{download}"')
        self.assertContains(page, "Download merged model")

        response = self.client.get(download)

        self.assertIsInstance(response, StreamingHttpResponse)
        self.assertEqual(response["Content-Disposition"], 'attachment; filename="tiny-v1-merged.zip"')
        archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
        self.assertIsNone(archive.testzip())
        names = set(archive.namelist())
        self.assertIn("tiny-v1-merged/config.json", names)
        self.assertIn("tiny-v1-merged/model.safetensors", names)
        self.assertEqual(
            archive.read("tiny-v1-merged/model.safetensors"), (out / "model.safetensors").read_bytes()
        )
        # The unpacked folder is a model transformers loads alone.
        from transformers import AutoModelForCausalLM

        archive.extractall(self.tmp / "unpacked")
        model = AutoModelForCausalLM.from_pretrained(self.tmp / "unpacked" / "tiny-v1-merged")
        self.assertFalse(any("lora" in name for name, _ in model.named_parameters()))
        self.assertIsInstance(next(model.parameters()), torch.Tensor)

    def test_the_download_streams_in_pieces_and_is_for_staff_only(self):
        folder = self.tmp / "merged-by-hand"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(os.urandom(300_000))
        merge = AdapterMerge.objects.create(adapter=self.adapter, status="succeeded", out_dir=str(folder))
        url = reverse("training:merge-download", args=[merge.pk])
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(shipping, "ZIP_CHUNK", 64 * 1024)
            pieces = list(self.client.get(url).streaming_content)
        self.assertGreater(len(pieces), 4)
        self.assertLess(max(len(p) for p in pieces), 65 * 1024)  # never a whole file at once
        archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
        self.assertEqual(
            archive.read("tiny-v1-merged/model.safetensors"), (folder / "model.safetensors").read_bytes()
        )
        self.client.force_login(self.bob)
        self.assertEqual(self.client.get(url).status_code, 403)
        self.client.force_login(self.alice)
        AdapterMerge.objects.filter(pk=merge.pk).update(status="running")
        self.assertEqual(self.client.get(url).status_code, 404)

    def test_served_by_daphne_the_download_is_sent_piece_by_piece(self):
        """Under ASGI Django reads a sync streaming body whole into a list first: the view gives it an
        async iterator there."""
        folder = self.tmp / "merged-by-hand"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(os.urandom(300_000))
        merge = AdapterMerge.objects.create(adapter=self.adapter, status="succeeded", out_dir=str(folder))

        async def download() -> tuple[bool, list[bytes]]:
            await self.async_client.aforce_login(self.alice)
            response = await self.async_client.get(reverse("training:merge-download", args=[merge.pk]))
            return response.is_async, [piece async for piece in response.streaming_content]

        with pytest.MonkeyPatch.context() as patch, warnings.catch_warnings():
            warnings.filterwarnings("error", message="StreamingHttpResponse must consume")
            patch.setattr(shipping, "ZIP_CHUNK", 64 * 1024)
            is_async, pieces = async_to_sync(download)()
        self.assertTrue(is_async)
        self.assertGreater(len(pieces), 4)
        archive = zipfile.ZipFile(io.BytesIO(b"".join(pieces)))
        self.assertEqual(archive.read("tiny-v1-merged/config.json"), b"{}")

    def test_it_says_in_one_line_why_an_adapter_cannot_be_merged(self):
        served = LanguageModel.objects.create(
            name="served", is_student=True, backend="openai", source="m", base_url="http://x:1/v1"
        )
        served_adapter = Adapter.objects.create(
            base_model=served, version=1, path=str(self.lora), method="sft"
        )
        gone = Adapter.objects.create(
            base_model=self.model, version=2, path=str(self.tmp / "gone"), method="sft"
        )
        for adapter, said in (
            (gone, f"tiny v2: no adapter folder at {self.tmp / 'gone'}"),
            (served_adapter, "served is served over HTTP; only a local model&#x27;s adapter can be merged"),
        ):
            response = self.post_merge(adapter, follow=True)
            self.assertContains(response, f'<p class="message error">{said}</p>', html=False)
        self.assertFalse(AdapterMerge.objects.exists())

    def test_a_failed_merge_shows_its_reason_and_writes_nothing(self):
        from safetensors.torch import load_file, save_file

        weights = self.lora / "adapter_model.safetensors"
        tensors = load_file(str(weights))
        save_file(
            {k: torch.zeros(v.shape[0], 2 * v.shape[1]) if "lora_A" in k else v for k, v in tensors.items()},
            str(weights),
        )
        with self.settings(TASKS=IMMEDIATE_TASKS):
            self.post_merge()
        merge = AdapterMerge.objects.get()
        self.assertEqual(merge.status, "failed")
        self.assertRegex(merge.error, r"does not fit .* has shape \[4, 128\] in the adapter but \[4, 64\]")
        self.assertFalse(
            Path(settings.TEACHLOOP_DATA_DIR, "merged").exists()
            and any(Path(settings.TEACHLOOP_DATA_DIR, "merged").iterdir())
        )
        page = self.client.get(reverse("training:adapters"))
        self.assertContains(page, "does not fit")
        self.assertContains(page, f'action="{reverse("training:adapter-merge", args=[self.adapter.pk])}"')

    def test_a_folder_already_at_the_target_is_left_alone(self):
        self.post_merge()
        merge = AdapterMerge.objects.get()
        Path(merge.out_dir).mkdir(parents=True)
        (Path(merge.out_dir) / "notes.txt").write_text("mine")
        self.assertEqual(shipping.adapter_merge_run(merge_id=merge.pk), "failed")
        merge.refresh_from_db()
        self.assertEqual(
            merge.error,
            f"{merge.out_dir} already exists (left by an earlier database?); move it away and merge again",
        )
        self.assertEqual((Path(merge.out_dir) / "notes.txt").read_text(), "mine")

    def test_a_merge_taken_for_lost_while_it_ran_leaves_no_folder(self):
        self.post_merge()
        merge = AdapterMerge.objects.get()

        def slow_merge(adapter, base, out, **kwargs):
            # Meanwhile its heartbeats stopped arriving and the page failed it.
            stale = timezone.now() - timedelta(seconds=settings.TEACHLOOP_JOB_STALE_AFTER_S + 5)
            AdapterMerge.objects.update(heartbeat_at=stale)
            self.assertEqual(shipping.adapter_merges_recover(), [merge.pk])
            return fake_merge(adapter, base, out)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(shipping, "merge_adapter", slow_merge)
            self.assertEqual(shipping.adapter_merge_run(merge_id=merge.pk), "lost")
        merge.refresh_from_db()
        self.assertEqual(merge.status, "failed")
        self.assertFalse(Path(merge.out_dir).exists())

    def test_a_merge_whose_worker_died_is_failed_and_can_be_merged_again(self):
        self.post_merge()
        stale = timezone.now() - timedelta(seconds=settings.TEACHLOOP_JOB_STALE_AFTER_S + 5)
        AdapterMerge.objects.update(status="running", heartbeat_at=stale, worker="gpu-1:42", lease="x")
        state = self.client.get(reverse("training:adapter-merge-state", args=[self.adapter.pk]))
        self.assertContains(state, "worker gpu-1:42 stopped during the merge")
        self.assertNotContains(state, "hx-trigger")  # finished: the cell stops polling
        self.post_merge()
        self.assertEqual(sorted(AdapterMerge.objects.values_list("status", flat=True)), ["failed", "queued"])
