"""manage.py merge_adapter: a LoRA adapter merged into its student's base, as a plain transformers folder."""

from __future__ import annotations

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from training.core.errors import first_line
from training.core.merge import MergeError, check_out, merge_adapter, read_adapter
from training.jobs import training_base_path
from training.models import Adapter, LanguageModel
from training.services import default_model


class Command(BaseCommand):
    help = (
        "Merge a LoRA adapter into its base model and write a plain transformers folder (weights, "
        "config, tokenizer with the chat template) that loads with AutoModelForCausalLM.from_pretrained "
        "without peft and answers greedily as base + adapter does. The base is the adapter's registered "
        "model (the default student for a folder no adapter row names). The folder is written whole or "
        "not at all."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "adapter",
            metavar="ADAPTER",
            help="an adapter's id (see the Adapters page) or a peft adapter folder",
        )
        parser.add_argument(
            "--out", required=True, type=Path, metavar="DIR", help="the folder to write (must not exist)"
        )
        parser.add_argument(
            "--force",
            action="store_true",
            help="replace an existing --out model folder (or empty folder), once the new one is complete",
        )
        parser.add_argument(
            "--student",
            metavar="NAME",
            help="the registered model whose base the adapter goes into (default: the adapter's own model "
            "for an id or a registered folder, else the default student); an adapter made for another "
            "base is refused",
        )

    def handle(self, *args, adapter: str, out: Path, force: bool, student: str | None, **options) -> None:
        row = _adapter_row(adapter)
        model = _student(student, row)
        try:
            folder = read_adapter(row.path if row else adapter)
            check_out(out, replace=force, keep=(folder.path,))
        except MergeError as exc:
            raise CommandError(str(exc)) from exc
        try:
            base = training_base_path(model=model)  # a GGUF model: its safetensors copy (made once)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        except OSError as exc:
            raise CommandError(f"{model.name}: cannot read {model.source}: {first_line(exc)}") from exc
        try:
            written = merge_adapter(
                folder.path,
                base,
                out,
                replace=force,
                # An adapter row records its model; a bare folder has only the name it was saved with.
                check_base=row is None,
                chat_template=model.chat_template,
                progress=lambda message: self.stderr.write(message),
            )
        except MergeError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"merged {f'adapter {row.pk}' if row else folder.path} into {model.name}")
        self.stdout.write(str(written))


def _adapter_row(spec: str) -> Adapter | None:
    """The adapter row ``spec`` names (its id, or a registered adapter's folder); None for another folder."""
    if spec.isdigit():
        row = Adapter.objects.select_related("base_model").filter(pk=int(spec)).first()
        if row is None:
            raise CommandError(f"no adapter with id {spec}")
        return row
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise CommandError(f"{spec} is neither an adapter id nor a folder")
    names = {spec, str(path), str(path.resolve())}
    return Adapter.objects.select_related("base_model").filter(path__in=names).order_by("-pk").first()


def _student(name: str | None, row: Adapter | None) -> LanguageModel:
    if name:
        model = LanguageModel.objects.filter(name=name).first()
        if model is None:
            raise CommandError(f"no model named {name!r}")
    elif row is not None:
        model = row.base_model
    else:
        model = default_model(role="student")
        if model is None:
            raise CommandError("no default student; pass --student NAME")
    if row is not None and row.base_model_id != model.pk:
        raise CommandError(f"adapter {row.pk} was trained on {row.base_model}, not {model.name}")
    if model.backend == LanguageModel.Backend.OPENAI:
        raise CommandError(f"{model.name} is served over HTTP; only a local model's adapter can be merged")
    return model
