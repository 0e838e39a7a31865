"""Fine-tune a LoRA adapter from a JSONL file, in this process, with a progress bar."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from training import jobs
from training.core.config import METHODS, TrainConfig
from training.core.datasets import DatasetError
from training.core.fields import setting_default, setting_help
from training.models import Adapter, LanguageModel, TrainingJob


def _default(name: str):
    return setting_default(TrainConfig, name)


def _help(name: str) -> str:
    return f"{setting_help(TrainConfig, name)} (default {setting_default(TrainConfig, name)})"


class Command(BaseCommand):
    help = (
        "Fine-tune a LoRA adapter on a JSONL file (chat records for sft, prompt/chosen/rejected for dpo, "
        "prompt/completion/label for kto) and print the adapter folder. Runs here, not in a worker; the job "
        "is recorded and visible on the Training pages like any other."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--student", required=True, help="name of a registered local model")
        parser.add_argument("--data", required=True, type=Path, help="JSONL file of training records")
        parser.add_argument("--method", choices=METHODS, default="sft", help=_help("method"))
        parser.add_argument("--parent-adapter", type=int, help="id of an adapter to continue from")
        parser.add_argument(
            "--epochs",
            type=float,
            default=_default("num_epochs"),
            dest="num_epochs",
            help=_help("num_epochs"),
        )
        parser.add_argument("--max-steps", type=int, default=_default("max_steps"), help=_help("max_steps"))
        parser.add_argument(
            "--lr",
            type=float,
            default=_default("learning_rate"),
            dest="learning_rate",
            help=_help("learning_rate"),
        )
        parser.add_argument(
            "--batch-size", type=int, default=_default("batch_size"), help=_help("batch_size")
        )
        parser.add_argument("--lora-r", type=int, default=_default("lora_r"), help=_help("lora_r"))

    def handle(
        self, *args, student: str, data: Path, method: str, parent_adapter: int | None, **hyper
    ) -> None:
        hyper = {k: hyper[k] for k in ("num_epochs", "max_steps", "learning_rate", "batch_size", "lora_r")}
        model = LanguageModel.objects.filter(name=student).first()
        if model is None:
            names = ", ".join(LanguageModel.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no model named {student!r} (registered: {names})")
        if not data.is_file():
            raise CommandError(f"{data}: no such file")
        try:
            dataset = jobs.dataset_create_from_jsonl(
                name=data.name, method=method, text=data.read_text("utf-8"), source=str(data)
            )
        except DatasetError as exc:
            lines = "\n".join(f"  line {n}: {reason}" for n, reason in exc.errors[:50])
            raise CommandError(
                f"{data} has {len(exc.errors)} bad line(s); nothing was trained:\n{lines}"
            ) from exc
        parent = Adapter.objects.filter(pk=parent_adapter).first() if parent_adapter else None
        if parent_adapter and parent is None:
            raise CommandError(f"no adapter with id {parent_adapter}")
        try:
            job = jobs.training_job_create(
                base_model=model, dataset=dataset, parent_adapter=parent, enqueue=False, **hyper
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc

        bar = tqdm(total=0, unit="step", desc=f"job {job.pk}", file=self.stderr._out)
        status = jobs.training_job_run(job_id=job.pk, on_event=lambda e: _advance(bar, e))
        bar.close()
        job.refresh_from_db()
        if status != TrainingJob.Status.SUCCEEDED:
            raise CommandError(f"job {job.pk} {status}: {job.last_error or 'see the job page'}")
        self.stdout.write(f"job {job.pk} succeeded; final loss {job.loss}")
        self.stdout.write(job.adapter.path)


def _advance(bar: tqdm, event) -> None:
    bar.total = event.total_steps
    bar.n = event.step
    bar.set_postfix(loss=f"{event.loss:.4f}" if event.loss is not None else "-")
    bar.refresh()
