"""Teach a student model headless: rounds of the teaching loop with a progress bar and a table."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from training.models import LanguageModel
from tutor import teaching
from tutor.core.teaching.state import STEPS
from tutor.models import Course, TeachingRun


class Command(BaseCommand):
    help = ("Run a teaching run headless: each round diagnoses the student on probe items, plans, has the "
            "teacher explain the student's mistakes (answer-checked), scores explanations by their effect, "
            "generates verified new items, fine-tunes a LoRA adapter on what helped and re-examines on the "
            "exam split. Prints a per-round, per-skill table and the final adapter folder. --resume RUN_ID "
            "continues an interrupted run from its last finished step.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--course", help="course key (import one with `manage.py import_course`)")
        parser.add_argument("--student", help="registered local model (default: the default student)")
        parser.add_argument("--teacher", help="registered model (default: the default teacher)")
        parser.add_argument("--rounds", type=int, default=2)
        parser.add_argument("--plan", choices=["adaptive", "random"], default="adaptive")
        parser.add_argument("--budget", type=int, default=8, help="explanations per round")
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument("--train-steps", type=int, default=60, help="max training steps per round")
        parser.add_argument("--lr", type=float, default=2e-3)
        parser.add_argument("--lora-r", type=int, default=16)
        parser.add_argument("--no-train", action="store_true", help="diagnose/explain/re-examine only")
        parser.add_argument("--resume", type=int, metavar="RUN_ID", help="continue this run")

    def handle(self, *args, **opts) -> None:
        run = self._resume(opts["resume"]) if opts["resume"] else self._create(opts)
        bar = tqdm(total=run.config["rounds"] * len(STEPS), unit="step", file=self.stderr._out)

        def progress(step: str, round_index: int, info: dict) -> None:
            bar.set_description(f"run {run.pk} round {round_index} {step}")
            if info.get("status") == "done":
                bar.update(1)

        state = teaching.teaching_run_execute(run=run, progress=progress)
        bar.close()
        run.refresh_from_db()
        if state is None or run.status == TeachingRun.Status.FAILED:
            raise CommandError(f"run {run.pk} failed: {run.last_error}")
        self._table(run)
        if run.status != TeachingRun.Status.SUCCEEDED:
            self.stdout.write(f"run {run.pk} stopped early ({run.status}); continue it with --resume {run.pk}")
        self.stdout.write(run.adapter_path or "(no adapter: nothing was trained)")

    def _create(self, opts) -> TeachingRun:
        if not opts["course"]:
            raise CommandError("--course is required (or --resume RUN_ID)")
        course = Course.objects.filter(key=opts["course"]).first()
        if course is None:
            keys = ", ".join(Course.objects.values_list("key", flat=True)) or "none"
            raise CommandError(f"no course {opts['course']!r} (imported: {keys}); try "
                               "`manage.py import_course --pack arithmetic`")
        student, teacher = self._model(opts["student"], "student"), self._model(opts["teacher"], "teacher")
        train = {"disabled": True} if opts["no_train"] else {
            "max_steps": opts["train_steps"], "learning_rate": opts["lr"], "lora_r": opts["lora_r"]}
        try:
            return teaching.teaching_run_create(course=course, student=student, teacher=teacher, train=train,
                                                rounds=opts["rounds"], plan=opts["plan"],
                                                explain_budget=opts["budget"], seed=opts["seed"])
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc

    def _resume(self, run_id: int) -> TeachingRun:
        run = TeachingRun.objects.filter(pk=run_id).first()
        if run is None:
            raise CommandError(f"no teaching run {run_id}")
        TeachingRun.objects.filter(pk=run.pk).update(cancel_requested=False)
        return run

    def _model(self, name: str | None, role: str) -> LanguageModel:
        field = {"teacher": "is_default_teacher", "student": "is_default_student"}[role]
        model = (LanguageModel.objects.filter(name=name).first() if name
                 else LanguageModel.objects.filter(**{field: True}).first())
        if model is None:
            raise CommandError(f"no {role} model {name or '(no default set; run `manage.py bootstrap`)'}")
        return model

    def _table(self, run: TeachingRun) -> None:
        skills = sorted({s for r in run.results for s in r["exam"]} | {s for r in run.results for s in r["probe"]})
        self.stdout.write(f"{'round':>5}  {'skill':<16}{'probe':>8}{'exam':>8}{'base':>8}")
        for result in run.results:
            for skill in skills:
                cells = [result["probe"].get(skill), result["exam"].get(skill), result["base"].get(skill)]
                shown = "".join(f"{c:>8.0%}" if c is not None else f"{'—':>8}" for c in cells)
                self.stdout.write(f"{result['round']:>5}  {skill:<16}{shown}")
            if result["accuracy"] is not None:
                self.stdout.write(f"{result['round']:>5}  {'ALL (exam)':<16}{'':>8}{result['accuracy']:>8.0%}"
                                  f"{result['base_accuracy']:>8.0%}")
            for warning in result["warnings"]:
                self.stdout.write(f"  warning: {warning}")
