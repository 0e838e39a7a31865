"""manage.py evaluate: a student, with and without adapters, on a course's items, skill by skill."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from training.core.llm import LLMError
from training.models import Adapter, LanguageModel
from training.services import default_model
from tutor.core.runs import evaluation
from tutor.courses.services import course_to_core
from tutor.models import Course
from tutor.runs import services

SPLITS = evaluation.SPLITS


class Command(BaseCommand):
    help = (
        "Ask a student (and the same student with each --adapter) a course's items and print accuracy "
        "per skill with a 95% Wilson interval; + or - marks an adapter right on significantly more or "
        "fewer of the same items than the base (McNemar's exact test, 5%). Greedy answers, graded like "
        "a teaching run's exam."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--course", required=True, help="course key")
        parser.add_argument("--student", help="the student model's name (default: the default student)")
        parser.add_argument(
            "--adapter",
            action="append",
            default=[],
            help="an adapter's id (see the Adapters page) or folder; repeat to compare several",
        )
        parser.add_argument(
            "--split",
            choices=list(SPLITS),
            default="exam",
            help="; ".join(f"{k}: {v}" for k, v in SPLITS.items()) + " (default exam)",
        )
        parser.add_argument("--max-new-tokens", type=int, default=128, help="per answer (default 128)")

    def handle(self, *args, course: str, student: str | None, adapter: list[str], split: str, **options):
        row = Course.objects.filter(key=course).first()
        if row is None:
            raise CommandError(f"no course {course!r}; import one with manage.py import_course")
        model = _student(student)
        items = evaluation.select_items(course_to_core(course=row), split)
        if not items:
            raise CommandError(f"course {course} has no items in {SPLITS[split]}")
        adapters = [(spec, _adapter_path(spec, model)) for spec in adapter]
        if not 1 <= options["max_new_tokens"] <= 4096:
            raise CommandError("--max-new-tokens must be between 1 and 4096")
        llm = services.language_model_llm(model=model)
        columns: dict[str, dict] = {}
        marks: dict[str, dict[str, int]] = {}
        base: dict = {}
        try:
            for label, path in [("base", None), *adapters]:
                name = None
                if path is not None:
                    name = f"eval-{label}"
                    llm.load_adapter(name, path)
                self.stderr.write(f"{label}: answering {len(items)} items…")
                graded = evaluation.answers(
                    llm, items, adapter=name, max_new_tokens=options["max_new_tokens"]
                )
                column = "base" if path is None else f"adapter {label}"
                columns[column] = evaluation.per_skill(items, graded)
                if path is None:
                    base = graded
                else:
                    marks[column] = evaluation.versus_base(items, base, graded)
        except LLMError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"{model.name} on {row.key}, {SPLITS[split]}: {len(items)} items, greedy, at most "
            f"{options['max_new_tokens']} new tokens; accuracy [95% Wilson interval]"
        )
        self.stdout.write(evaluation.table(columns, marks))
        if adapters:
            self.stdout.write(
                "+ / -: right on significantly more / fewer of the same items than the base "
                "(McNemar's exact test, 5%)"
            )


def _student(name: str | None) -> LanguageModel:
    model = LanguageModel.objects.filter(name=name).first() if name else default_model(role="student")
    if model is None:
        raise CommandError(f"no model named {name!r}" if name else "no default student; pass --student NAME")
    if model.backend == LanguageModel.Backend.OPENAI:
        raise CommandError(f"{model.name} is served over HTTP; adapters are evaluated on local models")
    return model


def _adapter_path(spec: str, model: LanguageModel) -> str:
    """An adapter id (of ``model``) or a folder holding a PEFT adapter."""
    if spec.isdigit():
        adapter = Adapter.objects.select_related("base_model").filter(pk=int(spec)).first()
        if adapter is None:
            raise CommandError(f"no adapter with id {spec}")
        if adapter.base_model_id != model.pk:
            raise CommandError(f"adapter {spec} was trained on {adapter.base_model}, not {model.name}")
        spec = adapter.path
    if not (Path(spec) / "adapter_config.json").is_file():
        raise CommandError(f"no adapter at {spec} (no adapter_config.json there)")
    return spec
