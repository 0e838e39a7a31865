"""The state of a teaching run: plain dataclasses that round-trip through JSON.

Rules that matter:
- the loop saves the whole state after every finished step (:meth:`RunState.save`: write a temporary
  file beside it, then rename, so a crash leaves the old file or the new one, never half of one);
- a round lists its finished steps in ``done_steps``; a resumed run skips them, so teacher calls
  already paid for are never repeated. A step cut short in the middle is run again from its start;
- nothing here imports a model or Django: the Django side stores ``to_dict()`` in a JSON field or
  keeps the file, and the live page reads the same dictionaries.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from training.core.config import MAX_SEED
from training.core.fields import setting
from tutor.core.courses.course import AnswerType

STEPS: tuple[str, ...] = (
    "diagnose",
    "plan",
    "explain",
    "score",
    "generate",
    "build_data",
    "train",
    "reexamine",
)
PLANS: tuple[str, ...] = ("adaptive", "random")
LEVEL_MODES: tuple[str, ...] = ("window", "stretch")
CHOICE_SCORING: tuple[str, ...] = ("generate", "likelihood")
SCHEDULES: tuple[str, ...] = ("from_base", "continue")
ACCEPTANCE: tuple[str, ...] = ("probe", "always")
REPLAY_MIXES: tuple[str, ...] = ("random", "least_trained")
# Settings added after runs were saved without them: a resumed old run keeps the rule it started with.
OLD_RUN_DEFAULTS: dict[str, Any] = {
    "levels": "stretch",
    "confidence_z": 0.0,
    "general_probe": 0,
    "expert": False,
    "explain_samples": 1,
    "keep_share": 0.0,
    "schedule": "continue",
    "acceptance": "always",
    "round_tries": 1,
    "teacher_generate_k": 1_000,  # the teacher wrote every item
    "exam_every_round": True,
    "teacher_min_pass": 0.0,  # the teacher was asked in every round
    "continue_lr": 1.0,  # a continued round trained at the full learning rate
}


# Each round's training job, unless the run says otherwise: one LoRA pass over the round's records.
ROUND_TRAINING: dict[str, Any] = {"num_epochs": 1.0, "learning_rate": 2e-3, "lora_r": 16, "batch_size": 8}


class TeachingError(Exception):
    """A run that cannot go on as asked (a saved state from another course, changed settings)."""


@dataclass(frozen=True)
class RunConfig:
    """The settings of one run; checked when made, saved with the state. Each field carries its help
    (:func:`~training.core.fields.setting_help`), which the teach command and the web form show."""

    rounds: int = setting(
        2, help="rounds of diagnose, plan, explain, score, generate, build data, train, re-examine"
    )
    plan: str = setting(
        "adaptive",
        help="adaptive: prerequisites first, then where the student's learning "
        "progress is highest; random: the shuffled control arm with the same budget",
    )
    plan_budget: int = setting(
        48,
        help="training items the student practises per round (its wrong ones are "
        "what explanations and new items are made for)",
    )
    explain_budget: int = setting(8, help="explanations asked of the teacher per round")
    generate_budget: int = setting(
        24, help="wrong training items the teacher writes new items from, per round"
    )
    generate_k: int = setting(16, help="new items made per such item")
    teacher_generate_k: int = setting(
        1,
        help="of those, how many the teacher model is asked to write (the course's expert writes the rest, "
        "and stands in for the teacher's that fail)",
    )
    siblings: int = setting(1, help="other items of the skill re-answered when scoring an explanation (1-3)")
    replay_share: float = setting(
        0.3, help="share of each round's training records replayed from earlier rounds, in [0, 1)"
    )
    replay_mix: str = setting(
        "random",
        help="random: replayed records drawn at random, in proportion to the earlier rounds; "
        "least_trained: they go to the skills this round trains least (measured worse on the arithmetic "
        "pack: docs/benchmarks/teaching.md)",
    )
    levels: str = setting(
        "window",
        help="window: practise the planned level and every level above it; "
        "stretch: the planned level, stretch_share of the items one level up (adaptive plan)",
    )
    stretch_share: float = setting(
        0.25, help="with levels=stretch, the share of a skill's items from the level above the planned one"
    )
    seed: int = setting(0, help="random seed of the plan, sampling and generation")
    student_max_new_tokens: int = setting(
        128, help="tokens the student may write per answer (the packs' longest worked solutions need ~110)"
    )
    teacher_max_new_tokens: int = setting(160, help="tokens the teacher may write per explanation")
    confidence_z: float = setting(
        1.96,
        help="standard errors of probe noise the adaptive plan allows for "
        "(1.96: 95 percent; 0 reads probe accuracies as exact)",
    )
    exam_every_round: bool = setting(
        False, help="ask the exam after every round (default: after the last round only; it is the report)"
    )
    probe_per_skill: int = setting(
        8, help="probe items examined per skill in diagnose and to accept a round (0: all)"
    )
    forgetting_probe_per_skill: int = setting(
        4, help="probe items per untaught skill re-answered after training"
    )
    general_probe: int = setting(
        16,
        help="questions outside every course the student answers at each "
        "re-examination, against the base model (0: none)",
    )
    forgetting_warning_drop: float = setting(
        0.2, help="warn when the general probe falls this far below the base model's (0: never)"
    )
    choice_scoring: str = setting(
        "generate",
        help="how the student answers multiple choice: generate (it "
        "writes an answer) or likelihood (the option it finds likeliest)",
    )
    hacking_agreement_rise: float = setting(
        0.10, help="teacher-hacking warning: agreement with the teacher rose at least this much ..."
    )
    hacking_accuracy_stall: float = setting(0.02, help="... while exam accuracy rose less than this")
    expert: bool = setting(
        True,
        help="use the course's expert (a pack's solver, or the course's gold solutions) to check every "
        "step the teacher writes and to stand in, labelled, where the teacher's work fails",
    )
    explain_samples: int = setting(
        2, help="candidate explanations asked of the teacher per item; the first the checks pass is kept"
    )
    teacher_min_pass: float = setting(
        0.05,
        help="from the second round on, a step (explain, generate) asks the teacher model only if its "
        "drafts of that step passed the checks at least this often in the earlier rounds; below it the "
        "course's expert writes the step, labelled, and the round says why (0: always ask the teacher)",
    )
    keep_share: float = setting(
        0.25,
        help="share of each round's training records that replay the base student's own right answers "
        "on the keep set (self-distillation), in [0, 1)",
    )
    keep_threshold: float = setting(
        0.5, help="a course skill the base student answers at least this well on the probe is kept too"
    )
    schedule: str = setting(
        "continue",
        help="continue: each round continues the last adapter on its new records and a replay share; "
        "from_base: each round trains a new adapter from the base on every verified record so far",
    )
    acceptance: str = setting(
        "probe",
        help="probe: keep a round's adapter only when the held-out-phrasing probe gains over the base "
        "student, has not fallen behind the adapter it replaces beyond noise, and no keep skill "
        "drops beyond noise, else retry, then roll back; always: keep every trained adapter",
    )
    round_tries: int = setting(
        2, help="training tries per round (each retry replays more and halves the learning rate)"
    )
    continue_lr: float = setting(
        1.0,
        help="learning-rate scale of a round that continues the last adapter (schedule continue; "
        "round 0 trains from the base at the full rate), in (0, 1]",
    )

    def __post_init__(self) -> None:
        for name, minimum in (
            ("rounds", 1),
            ("plan_budget", 0),
            ("explain_budget", 0),
            ("generate_budget", 0),
            ("generate_k", 0),
            ("teacher_generate_k", 0),
            ("siblings", 1),
            ("seed", 0),
            ("student_max_new_tokens", 1),
            ("teacher_max_new_tokens", 1),
            ("probe_per_skill", 0),
            ("forgetting_probe_per_skill", 0),
            ("general_probe", 0),
            ("explain_samples", 1),
            ("round_tries", 1),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be a whole number >= {minimum}, not {value!r}")
        if self.seed > MAX_SEED:
            raise ValueError(f"seed must be at most {MAX_SEED}, not {self.seed}")
        if self.siblings > 3:
            raise ValueError(f"siblings must be between 1 and 3, not {self.siblings}")
        if self.plan not in PLANS:
            raise ValueError(f"plan must be one of {', '.join(PLANS)}, not {self.plan!r}")
        if self.levels not in LEVEL_MODES:
            raise ValueError(f"levels must be one of {', '.join(LEVEL_MODES)}, not {self.levels!r}")
        for name in ("expert", "exam_every_round"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, not {getattr(self, name)!r}")
        for name, allowed in (
            ("schedule", SCHEDULES),
            ("acceptance", ACCEPTANCE),
            ("replay_mix", REPLAY_MIXES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, not {getattr(self, name)!r}")
        if self.choice_scoring not in CHOICE_SCORING:
            raise ValueError(
                f"choice_scoring must be one of {', '.join(CHOICE_SCORING)}, not {self.choice_scoring!r}"
            )
        z = self.confidence_z
        if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or not 0 <= z <= 5:
            raise ValueError(f"confidence_z must be a number between 0 and 5, not {z!r}")
        for name, upper_open in (
            ("replay_share", True),
            ("keep_share", True),
            ("keep_threshold", False),
            ("teacher_min_pass", False),
            ("stretch_share", False),
            ("hacking_agreement_rise", False),
            ("hacking_accuracy_stall", False),
            ("forgetting_warning_drop", False),
        ):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or value < 0
                or value > 1
                or (upper_open and value >= 1)
            ):
                interval = "[0, 1)" if upper_open else "[0, 1]"
                raise ValueError(f"{name} must be a fraction in {interval}, not {value!r}")
        lr = self.continue_lr
        number = isinstance(lr, (int, float)) and not isinstance(lr, bool)
        if not (number and math.isfinite(lr) and 0 < lr <= 1):
            raise ValueError(f"continue_lr must be a number in (0, 1], not {lr!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown teaching setting(s): {', '.join(unknown)}")
        # A state saved before a setting existed resumes with the rule it was started with.
        return cls(**{**OLD_RUN_DEFAULTS, **data})


@dataclass
class Answer:
    """One graded answer: by the student, or by the teacher on an exam item."""

    item: str
    text: str
    extracted: str | None
    correct: bool


@dataclass
class Explanation:
    """A teacher's explanation of one wrong answer, its verification and its measured effect.

    ``passed_gate`` is False when the teacher's own final answer (``teacher_answer``) is not the gold
    answer, or when the text quotes an exam question (``gate_reason`` says which); such
    explanations are kept for display but never scored. ``score`` is the mean correctness after
    minus before over the item and its ``siblings``; ``answer_after`` is the student's answer to the
    item itself with the explanation in context. ``approved`` is a person's rating (None: not
    rated), pulled in through ``run_teaching(ratings=...)``; ``edited`` a person's rewrite, pulled in
    through ``run_teaching(edits=...)``, which then replaces the teacher's text wherever the text is
    used for teaching (:attr:`final_text`); see :attr:`helped` for what trains.
    """

    id: str
    round: int
    item: str
    skill: str
    split: str
    student_answer: str
    text: str
    teacher_answer: str | None
    passed_gate: bool
    gate_reason: str = ""  # why the gate dropped it: a wrong final answer, or a quoted exam question
    quotes_exam: bool = False  # the text holds an exam question: never shown again, never trained on
    shown_helpful: list[str] = field(default_factory=list)  # ids of earlier explanations in the prompt
    siblings: list[str] = field(default_factory=list)
    before: list[bool] = field(default_factory=list)  # item first, then siblings
    after: list[bool] = field(default_factory=list)
    score: float | None = None
    answer_after: str = ""
    approved: bool | None = None
    edited: str | None = None
    # Who wrote ``text``: "model" (a teacher candidate that passed every check) or "expert" (the
    # course's expert, labelled, after every candidate failed; ``model_text`` keeps the first one).
    source: str = "model"
    candidates: int = 1
    candidates_passed: int = 0
    model_text: str = ""

    @property
    def final_text(self) -> str:
        """What teaches: a person's edit when there is one, else the teacher's text (kept as written)."""
        return self.edited if self.edited and self.edited.strip() else self.text

    @property
    def helped(self) -> bool:
        """Worth training on: approved by a person, or (unrated) through the gate with a score > 0.

        A person's approval overrides the answer gate and the score (they read the whole
        explanation; the grader reads only its final answer), never the exam guard; a rejection
        (``approved=False``) always excludes it.
        """
        if self.quotes_exam or self.approved is False:
            return False
        return self.approved is True or (self.passed_gate and (self.score or 0.0) > 0)


@dataclass
class GeneratedItem:
    """A teacher-written exercise with its provenance and how (or whether) it was verified.

    ``verified_by`` is "solver" (the packs' code solver agrees with the stated answer),
    "teacher_agreement" (no solver could read it; a second, independent teacher answer agrees) or
    "" when ``kept`` is False; ``reason`` then says why it was dropped.
    """

    key: str
    skill: str
    prompt: str
    answer: str
    answer_type: AnswerType
    solution: str
    difficulty: int
    source_item: str
    round: int
    teacher: str
    options: list[str] = field(default_factory=list)
    kept: bool = False
    verified_by: str = ""
    reason: str = ""
    source: str = "model"  # "expert": written by the course's expert where the teacher's drafts failed
    phrasing: str = ""


@dataclass
class RoundState:
    """What one round found and made, step by step; ``done_steps`` lists the finished steps."""

    index: int
    done_steps: list[str] = field(default_factory=list)
    adapter_before: str | None = None  # the student's adapter name while diagnosing
    # diagnose
    probe_accuracy: dict[str, float] = field(default_factory=dict)
    answers: dict[str, Answer] = field(default_factory=dict)  # the student's, this round, before training
    wrong: list[str] = field(default_factory=list)  # probe items answered wrongly
    # plan
    plan: dict[str, Any] = field(default_factory=dict)  # items_per_skill, difficulty_per_skill, reasons
    planned_items: list[str] = field(default_factory=list)  # training items practised this round
    # explain + score
    explanations: list[Explanation] = field(default_factory=list)
    # generate
    generated: list[GeneratedItem] = field(default_factory=list)
    # build_data
    sft_records: list[dict[str, Any]] = field(default_factory=list)
    dpo_records: list[dict[str, Any]] = field(default_factory=list)
    replayed: int = 0
    # train
    train: dict[str, Any] = field(default_factory=dict)  # adapter_path, adapter_name, records, note
    keep_records: int = 0  # self-distillation records in sft_records
    # train: every try, with its judgement; the accepted one (if any) is the round's adapter
    tries: list[dict[str, Any]] = field(default_factory=list)
    probe_after: dict[str, Answer] = field(default_factory=dict)  # the probe with the accepted adapter
    # reexamine
    exam: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def dropped_explanations(self) -> int:
        return sum(not e.passed_gate for e in self.explanations)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RoundState:
        data = dict(data)
        data["answers"] = {k: Answer(**v) for k, v in data.get("answers", {}).items()}
        data["explanations"] = [Explanation(**e) for e in data.get("explanations", [])]
        data["generated"] = [GeneratedItem(**g) for g in data.get("generated", [])]
        data["probe_after"] = {k: Answer(**v) for k, v in data.get("probe_after", {}).items()}
        return cls(**data)


@dataclass
class RunState:
    """A whole run: its settings, its rounds, and caches that must never be paid for twice.

    ``base_exam`` holds the base model's exam answers (examined once, in round 0) and
    ``teacher_exam`` the teacher's (answered once; answering exam items is fine, training on them
    is not); ``base_general`` the base model's answers to the general probe (once).
    ``adapter_path``/``adapter_name`` are the student's current adapter (None: the base).
    """

    config: RunConfig
    course: str
    teacher: str
    student: str
    rounds: list[RoundState] = field(default_factory=list)
    base_exam: dict[str, Answer] = field(default_factory=dict)
    teacher_exam: dict[str, Answer] = field(default_factory=dict)
    base_general: dict[str, Answer] = field(default_factory=dict)
    base_probe: dict[str, Answer] = field(default_factory=dict)  # the base model's probe answers
    # the base model's right answers on train items: self-distillation records replay them
    keep_pool: dict[str, Answer] = field(default_factory=dict)
    keep_items: list[GeneratedItem] = field(default_factory=list)  # the expert's extra keep-set items
    adapter_path: str | None = None
    adapter_name: str | None = None
    finished: bool = False

    def round(self, index: int) -> RoundState:
        while len(self.rounds) <= index:
            self.rounds.append(RoundState(index=len(self.rounds)))
        return self.rounds[index]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunState:
        data = dict(data)
        data["config"] = RunConfig.from_dict(data["config"])
        data["rounds"] = [RoundState.from_dict(r) for r in data.get("rounds", [])]
        data["base_exam"] = {k: Answer(**v) for k, v in data.get("base_exam", {}).items()}
        data["teacher_exam"] = {k: Answer(**v) for k, v in data.get("teacher_exam", {}).items()}
        for name in ("base_general", "base_probe", "keep_pool"):
            data[name] = {k: Answer(**v) for k, v in data.get(name, {}).items()}
        data["keep_items"] = [GeneratedItem(**g) for g in data.get("keep_items", [])]
        return cls(**data)

    def save(self, path: str | Path) -> None:
        """Write atomically: a temporary file in the same folder, flushed, then renamed over ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(self.to_dict(), handle, indent=1, sort_keys=True)
                handle.write("\n")
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, path: str | Path) -> RunState:
        return cls.from_dict(json.loads(Path(path).read_text()))
