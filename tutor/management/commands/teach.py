"""Teach a student model headless: rounds of the teaching loop with a progress bar and a table."""

from __future__ import annotations

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from training.core.config import PRECISIONS, TrainConfig
from training.core.fields import setting_default, setting_help
from training.models import LanguageModel
from tutor.core.runs.state import (
    ACCEPTANCE,
    CHOICE_SCORING,
    PLANS,
    ROUND_TRAINING,
    SCHEDULES,
    STEPS,
    RunConfig,
)
from tutor.models import Course, TeachingRun
from tutor.runs import selectors, services

# Settings of a new run: a resumed run keeps its own (a changed budget would mix two experiments).
NEW_RUN_ONLY = (
    "course",
    "student",
    "teacher",
    "plan",
    "budget",
    "plan_budget",
    "generate_budget",
    "generate_k",
    "seed",
    "choice_scoring",
    "explain_samples",
    "teacher_min_pass",
    "keep_share",
    "schedule",
    "acceptance",
    "round_tries",
    "continue_lr",
    "expert",
    "train_steps",
    "lr",
    "lora_r",
)


class Command(BaseCommand):
    help = (
        "Run a teaching run headless: each round diagnoses the student on probe items, plans, has the "
        "teacher explain the student's mistakes (answer-checked), scores explanations by their effect, "
        "generates verified new items, fine-tunes a LoRA adapter on what helped and re-examines on the "
        "exam split. Prints a per-round, per-skill table and the final adapter folder. --resume RUN_ID "
        "continues an interrupted run from its last finished step (with --rounds N, up to N rounds)."
    )

    def add_arguments(self, parser) -> None:
        # Defaults are None so that --resume can tell a given setting from an omitted one.
        def run_help(name: str) -> str:
            return f"{setting_help(RunConfig, name)} (default {setting_default(RunConfig, name)})"

        def train_help(name: str) -> str:
            return (
                f"each round's training: {setting_help(TrainConfig, name)} (default {ROUND_TRAINING[name]})"
            )

        parser.add_argument("--course", help="course key (import one with `manage.py import_course`)")
        parser.add_argument("--student", help="registered local model (default: the default student)")
        parser.add_argument("--teacher", help="registered model (default: the default teacher)")
        parser.add_argument(
            "--rounds",
            type=int,
            help=run_help("rounds") + "; with --resume, the new total: more rounds "
            "than the run has extend it",
        )
        parser.add_argument("--plan", choices=PLANS, help=run_help("plan"))
        parser.add_argument("--budget", type=int, metavar="N", help=run_help("explain_budget"))
        parser.add_argument("--plan-budget", type=int, metavar="N", help=run_help("plan_budget"))
        parser.add_argument("--generate-budget", type=int, metavar="N", help=run_help("generate_budget"))
        parser.add_argument("--generate-k", type=int, metavar="K", help=run_help("generate_k"))
        parser.add_argument("--seed", type=int, help=run_help("seed"))
        parser.add_argument("--choice-scoring", choices=CHOICE_SCORING, help=run_help("choice_scoring"))
        parser.add_argument("--explain-samples", type=int, metavar="N", help=run_help("explain_samples"))
        parser.add_argument("--teacher-min-pass", type=float, metavar="F", help=run_help("teacher_min_pass"))
        parser.add_argument("--keep-share", type=float, metavar="F", help=run_help("keep_share"))
        parser.add_argument("--schedule", choices=SCHEDULES, help=run_help("schedule"))
        parser.add_argument("--acceptance", choices=ACCEPTANCE, help=run_help("acceptance"))
        parser.add_argument("--round-tries", type=int, metavar="N", help=run_help("round_tries"))
        parser.add_argument("--continue-lr", type=float, metavar="F", help=run_help("continue_lr"))
        parser.add_argument(
            "--no-expert",
            dest="expert",
            action="store_const",
            const=False,
            help="the teacher model alone: no expert checks its steps or stands in where it fails "
            "(default: the course's expert, when it has one)",
        )
        parser.add_argument(
            "--train-steps",
            type=int,
            help="each round's training: optimizer steps (default: one pass over the round's records)",
        )
        parser.add_argument("--lr", type=float, help=train_help("learning_rate"))
        parser.add_argument("--lora-r", type=int, help=train_help("lora_r"))
        parser.add_argument(
            "--precision",
            choices=PRECISIONS,
            help=f"each round's training: {setting_help(TrainConfig, 'precision')} "
            f"(default {setting_default(TrainConfig, 'precision')})",
        )
        parser.add_argument("--no-train", action="store_true", help="diagnose/explain/re-examine only")
        parser.add_argument(
            "--resume",
            type=int,
            metavar="RUN_ID",
            help="continue this run from its last finished step (it keeps its settings)",
        )

    def handle(self, *args, **opts) -> None:
        if opts["resume"]:
            given = [f"--{name.replace('_', '-')}" for name in NEW_RUN_ONLY if opts[name] is not None]
            if given or opts["no_train"]:
                raise CommandError(
                    f"{', '.join(given or ['--no-train'])}: a resumed run keeps its settings "
                    "(only --rounds may add rounds); start a new run to change them"
                )
            run_id = opts["resume"]
        else:
            run_id = self._create(opts).pk
        try:
            run = services.teaching_run_take(run_id=run_id, rounds=opts["rounds"] if opts["resume"] else None)
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc
        state = selectors.teaching_run_state_load(run)
        # A resumed run starts the bar at the steps it has done, so it ends at 100%.
        done = sum(len(r.done_steps) for r in state.rounds) if state is not None else 0
        bar = tqdm(total=run.config["rounds"] * len(STEPS), initial=done, unit="step", file=self.stderr._out)

        started: dict[tuple[int, str], float] = {}

        def progress(step: str, round_index: int, info: dict) -> None:
            bar.set_description(f"run {run.pk} round {round_index} {step}")
            if info.get("status") == "started":
                started[(round_index, step)] = time.monotonic()
            elif info.get("status") == "done":
                bar.update(1)
                took = time.monotonic() - started.get((round_index, step), time.monotonic())
                bar.write(f"round {round_index} {step}: {took:.0f} s", file=self.stderr._out)

        state = services.teaching_run_execute(run=run, progress=progress)
        bar.close()
        run.refresh_from_db()
        if state is None or run.status == TeachingRun.Status.FAILED:
            raise CommandError(f"run {run.pk} failed: {run.last_error}")
        self._table(run)
        if run.status != TeachingRun.Status.SUCCEEDED:
            self.stdout.write(
                f"run {run.pk} stopped early ({run.status}); continue it with --resume {run.pk}"
            )
        self.stdout.write(run.adapter_path or "(no adapter: nothing was trained)")

    def _create(self, opts) -> TeachingRun:
        if not opts["course"]:
            raise CommandError("--course is required (or --resume RUN_ID)")
        course = Course.objects.filter(key=opts["course"]).first()
        if course is None:
            keys = ", ".join(Course.objects.values_list("key", flat=True)) or "none"
            raise CommandError(
                f"no course {opts['course']!r} (imported: {keys}); try "
                "`manage.py import_course --pack arithmetic`"
            )
        student, teacher = self._model(opts["student"], "student"), self._model(opts["teacher"], "teacher")
        given = {
            "max_steps": opts["train_steps"],
            "learning_rate": opts["lr"],
            "lora_r": opts["lora_r"],
            "precision": opts["precision"],
        }
        train = (
            {"disabled": True}
            if opts["no_train"]
            else {**ROUND_TRAINING, **{k: v for k, v in given.items() if v is not None}}
        )
        settings = {
            "rounds": opts["rounds"],
            "plan": opts["plan"],
            "explain_budget": opts["budget"],
            "plan_budget": opts["plan_budget"],
            "generate_budget": opts["generate_budget"],
            "generate_k": opts["generate_k"],
            "seed": opts["seed"],
            "choice_scoring": opts["choice_scoring"],
            "explain_samples": opts["explain_samples"],
            "teacher_min_pass": opts["teacher_min_pass"],
            "keep_share": opts["keep_share"],
            "schedule": opts["schedule"],
            "acceptance": opts["acceptance"],
            "round_tries": opts["round_tries"],
            "continue_lr": opts["continue_lr"],
            "expert": opts["expert"],
        }
        try:
            return services.teaching_run_create(
                course=course,
                student=student,
                teacher=teacher,
                train=train,
                **{k: v for k, v in settings.items() if v is not None},
            )
        except ValidationError as exc:
            raise CommandError(" ".join(exc.messages)) from exc

    def _model(self, name: str | None, role: str) -> LanguageModel:
        field = {"teacher": "is_default_teacher", "student": "is_default_student"}[role]
        model = (
            LanguageModel.objects.filter(name=name).first()
            if name
            else LanguageModel.objects.filter(**{field: True}).first()
        )
        if model is None:
            raise CommandError(f"no {role} model {name or '(no default set; run `manage.py bootstrap`)'}")
        return model

    def _table(self, run: TeachingRun) -> None:
        """Per round and skill: probe, then the exam on training phrasings and on held-out phrasings
        beside the base model's; the keep skills apart; then who wrote what and each try's verdict."""
        rounds = list(run.rounds.all())
        keep = set(run.course.skills.filter(keep=True).values_list("key", flat=True))
        skills = list(run.course.skills.values_list("key", flat=True))
        self.stdout.write(
            f"{'round':>5}  {'skill':<16}{'probe':>7}{'exam':>7}{'held':>7}{'base':>7}{'base':>7}\n"
            f"{'':>5}  {'':<16}{'':>7}{'(train':>7}{'-out)':>7}{'(train':>7}{'(held)':>7}"
        )
        for row in rounds:
            extra = row.extra
            for skill in skills:
                cells = [
                    row.probe.get(skill),
                    extra.get("per_skill_trained_phrasing", row.exam).get(skill),
                    extra.get("per_skill_held_out", {}).get(skill),
                    extra.get("base_per_skill_trained_phrasing", row.base).get(skill),
                    extra.get("base_per_skill_held_out", {}).get(skill),
                ]
                name = f"{skill} (keep)" if skill in keep else skill
                self.stdout.write(f"{row.index:>5}  {name:<16}{_cells(cells)}")
            if row.accuracy is not None:
                cells = [
                    None,
                    extra.get("trained_phrasing_accuracy"),
                    extra.get("held_out_accuracy"),
                    extra.get("base_trained_phrasing_accuracy"),
                    extra.get("base_held_out_accuracy"),
                ]
                self.stdout.write(f"{row.index:>5}  {'TAUGHT (exam)':<16}{_cells(cells)}")
            general = extra.get("general")
            if general:
                cells = [None, general["accuracy"], None, general["base_accuracy"], None]
                self.stdout.write(f"{row.index:>5}  {'general probe':<16}{_cells(cells)}")
            model, expert, rate = extra.get("by_model"), extra.get("by_expert"), extra.get("pass_rate")
            if model and expert and rate:
                passed = f"explain {_rate(rate['explain'])}, generate {_rate(rate['generate'])}"
                self.stdout.write(
                    f"  written by the teacher model: {model['explanations']} explanations, "
                    f"{model['generated']} items (its pass rate: {passed}); by the course's expert: "
                    f"{expert['explanations']} explanations, {expert['generated']} items"
                )
            for attempt in extra.get("tries", []):
                verdict = "accepted" if attempt["accepted"] else "rejected"
                self.stdout.write(f"  try {attempt['attempt'] + 1}: {verdict}: {attempt['reason']}")
            for warning in row.warnings:
                self.stdout.write(f"  warning: {warning}")


def _cells(values: list[float | None]) -> str:
    return "".join(f"{v:>7.0%}" if v is not None else f"{'—':>7}" for v in values)


def _rate(value: float | None) -> str:
    return f"{value:.0%}" if value is not None else "—"
