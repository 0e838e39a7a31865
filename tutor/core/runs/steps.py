"""The eight steps of one teaching round, one function each: ``step(ctx, round_state) -> info``.

A step reads what earlier steps left in the :class:`~.state.RoundState`, writes its own results
there and returns a small ``info`` dict for progress reports. Every model call is batched: at most
one ``generate`` per model and purpose per step, none when there is nothing to ask. Each step's
docstring gives its rule; docs/teaching-runs.md tells the whole round, docs/decisions.md why.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol

from training.core.llm.base import LLM, GenerationParams, UnsupportedOperation
from tutor.core.courses.checks import echoed, grade_model_answer, loops_or_stops
from tutor.core.courses.course import Course, CourseError, Exercise, training_safe
from tutor.core.courses.expert import Expert, Verdict, expert_for
from tutor.core.courses.grading import (
    REMAINDER_RE,
    choose_by_likelihood,
    extract_answer,
    grade,
    normalize_text,
)
from tutor.core.courses.packs import verify
from tutor.core.courses.phrasings import read
from tutor.core.runs import prompts
from tutor.core.runs.acceptance import judge, retry_settings
from tutor.core.runs.general_probe import general_items
from tutor.core.runs.guard import ExamGuard
from tutor.core.runs.planner import Planner, random_plan
from tutor.core.runs.state import Answer, Explanation, GeneratedItem, RoundState, RunConfig, RunState


class TrainFn(Protocol):
    """Fine-tune the student on ``records`` for round ``round_index``, from ``parent_adapter`` (None:
    the base); ``attempt`` counts retries of the round, ``lr_scale`` scales the learning rate. Returns
    the adapter folder, or None when training is disabled."""

    def __call__(
        self,
        records: list[dict[str, Any]],
        round_index: int,
        parent_adapter: str | None,
        *,
        attempt: int = 0,
        lr_scale: float = 1.0,
    ) -> str | Path | None: ...


@dataclass
class Context:
    """Everything a step needs besides its round; built once per :func:`~.loop.run_teaching` call."""

    course: Course
    teacher: LLM
    student: LLM
    config: RunConfig
    state: RunState
    train_fn: TrainFn | None = None
    guard: ExamGuard = field(init=False)
    items: dict[str, Exercise] = field(init=False)
    general: tuple[Exercise, ...] = field(init=False)  # the general probe's items (held out, like the exam)
    expert: Expert | None = field(init=False)  # the course's expert, when the run uses it

    def __post_init__(self) -> None:
        self.general = general_items(self.config.general_probe)
        held_out_probe = tuple(e for e in self.course.split("probe") if e.held_out)
        self.guard = ExamGuard(self.course, held_out=self.general + held_out_probe)
        self.items = {e.key: e for e in self.course.exercises}
        self.expert = expert_for(self.course) if self.config.expert else None

    def check(self, exercise: Exercise, text: str) -> Verdict:
        """Whether a teacher's text may teach ``exercise``: its final answer, and with an expert
        every written step; never a copy of a held-out question or of its instructions, never a text
        that loops or stops mid-sentence."""
        copy = self.guard.exam_copy(text)
        if copy:
            return Verdict(False, f"quotes the held-out question {copy!r}")
        echo = echoed(text, prompts.INSTRUCTIONS)
        if echo:
            return Verdict(False, f"repeats its instructions ({echo!r})")
        fault = loops_or_stops(text)
        if fault:
            return Verdict(False, fault)
        if self.expert is not None:
            return self.expert.check(exercise, text)
        result = grade(exercise, text)
        return Verdict(result.correct, "" if result.correct else f"final answer is wrong ({result.reason})")

    @property
    def teacher_name(self) -> str:
        return getattr(self.teacher, "name", "teacher")

    def student_params(self) -> GenerationParams:
        return GenerationParams(
            max_new_tokens=self.config.student_max_new_tokens, temperature=0.0, seed=self.config.seed
        )

    def teacher_params(self, factor: int = 1, *, temperature: float = 0.0) -> GenerationParams:
        tokens = min(self.config.teacher_max_new_tokens * max(factor, 1), 4096)
        return GenerationParams(max_new_tokens=tokens, temperature=temperature, seed=self.config.seed)

    def round_seed(self, index: int, purpose: str) -> str:
        return f"{self.config.seed}:{index}:{purpose}"


def ask(
    llm: LLM,
    conversations: Sequence[list[dict[str, str]]],
    params: GenerationParams,
    *,
    adapter: str | None = None,
) -> list[str]:
    """One batched call; no call at all for no conversations."""
    if not conversations:
        return []
    generations = llm.generate(list(conversations), params, adapter=adapter)
    if len(generations) != len(conversations):  # a backend bug would otherwise pair answers with wrong items
        raise RuntimeError(f"{llm.name}: {len(generations)} replies to {len(conversations)} prompts")
    return [g.text for g in generations]


def student_replies(
    ctx: Context, asked: Sequence[tuple[Exercise, prompts.Conversation]], *, adapter: str | None
) -> list[str]:
    """The student's replies to ``asked`` (an item and the conversation that asks it), in order.

    Generated in one batch, except multiple-choice items when ``choice_scoring`` is "likelihood":
    each is answered by the option whose ``Answer: <option>`` reply the student finds likeliest
    (one scoring batch for all of them), and that line is its reply, graded like any other.
    """
    by_likelihood = ctx.config.choice_scoring == "likelihood"
    scored = [i for i, (e, _) in enumerate(asked) if by_likelihood and e.answer_type == "choice"]
    skip = set(scored)
    written = [i for i in range(len(asked)) if i not in skip]
    replies = [""] * len(asked)
    texts = ask(ctx.student, [asked[i][1] for i in written], ctx.student_params(), adapter=adapter)
    for i, text in zip(written, texts, strict=True):
        replies[i] = text
    requests = [(asked[i][1], f"Answer: {option}") for i in scored for option in asked[i][0].options]
    scores = ctx.student.reply_loglikelihood(requests, adapter=adapter) if requests else []
    start = 0
    for i in scored:
        options = asked[i][0].options
        best = choose_by_likelihood(options, scores[start : start + len(options)])
        replies[i] = f"Answer: {options[best]}"
        start += len(options)
    return replies


def answer_plainly(ctx: Context, items: Sequence[Exercise], *, adapter: str | None) -> list[str]:
    """The student's replies to ``items`` asked with the plain student prompt."""
    return student_replies(ctx, [(e, prompts.student_prompt(e)) for e in items], adapter=adapter)


def graded(exercise: Exercise, text: str) -> Answer:
    """A model's answer, graded strictly (:func:`~tutor.core.courses.checks.grade_model_answer`)."""
    result = grade_model_answer(exercise, text)
    return Answer(item=exercise.key, text=text, extracted=result.extracted, correct=result.correct)


def answer_key(exercise: Exercise, text: str) -> str | None:
    """The answer ``text`` gives, in a form two answers can be compared by (agreement)."""
    if exercise.answer_type == "number":
        return extract_answer(text, "number")
    if exercise.answer_type == "choice":
        return extract_answer(text, "choice", exercise.options)
    if REMAINDER_RE.match(exercise.answer):
        return extract_answer(text, "remainder")
    got = extract_answer(text, "text")
    return normalize_text(got) if got else None


def _mean(values: Sequence[bool | float]) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0


def _per_skill(items: Sequence[Exercise], answers: dict[str, Answer]) -> dict[str, float]:
    by_skill: dict[str, list[bool]] = defaultdict(list)
    for e in items:
        if e.key in answers:
            by_skill[e.skill].append(answers[e.key].correct)
    return {skill: round(_mean(v), 4) for skill, v in by_skill.items()}


# ---------------------------------------------------------------- 1. diagnose


def probe_items(ctx: Context) -> list[Exercise]:
    limit = ctx.config.probe_per_skill
    chosen: list[Exercise] = []
    for skill in ctx.course.skills:
        pool = ctx.course.exercises_for(skill.key, "probe")
        chosen.extend(pool[:limit] if limit else pool)
    return chosen


def diagnose(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """The student (current adapter) answers the probe items (all, or the first ``probe_per_skill``
    of each skill, the same every round); per-skill accuracy, every answer kept, the wrong ones
    listed. The probe only measures: its items are never explained or trained on."""
    items = probe_items(ctx)
    state = ctx.state
    rnd.adapter_before = state.adapter_name
    previous = state.rounds[rnd.index - 1] if rnd.index else None
    reused = (
        previous is not None
        and previous.probe_after
        and previous.train.get("adapter_name") == state.adapter_name
        and all(e.key in previous.probe_after for e in items)
    )
    if reused:  # the last round's accepted try examined this probe with this very adapter
        rnd.answers.update({e.key: previous.probe_after[e.key] for e in items})  # type: ignore[union-attr]
    else:
        texts = answer_plainly(ctx, items, adapter=rnd.adapter_before)
        for e, text in zip(items, texts, strict=True):
            rnd.answers[e.key] = graded(e, text)
    if rnd.adapter_before is None and not state.base_probe:
        state.base_probe = {e.key: rnd.answers[e.key] for e in items}
    rnd.probe_accuracy = _per_skill(items, rnd.answers)
    rnd.wrong = [e.key for e in items if not rnd.answers[e.key].correct]
    return {
        "accuracy": rnd.probe_accuracy,
        "held_out": _held_out_accuracy(items, rnd.answers),
        "examined": len(items),
        "reused": bool(reused),
        "wrong": len(rnd.wrong),
    }


def _held_out_accuracy(items: Sequence[Exercise], answers: dict[str, Answer]) -> float | None:
    """Accuracy on the taught skills' items asked in held-out phrasings (None: there are none)."""
    held = [answers[e.key].correct for e in items if e.held_out and e.key in answers]
    return round(_mean(held), 4) if held else None


# ---------------------------------------------------------------- 2. plan


def plan(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """Items per skill and level for this round (:class:`~.planner.Planner` on the probe history
    with its noise, or :func:`~.planner.random_plan`), then concrete train items: not practised
    before first, nearest the planned level. ``levels="window"`` spreads a skill's items over the
    planned level and every level above it; ``"stretch"`` puts ``stretch_share`` of them one level
    up (adaptive plan only)."""
    course, config, state = ctx.course, ctx.config, ctx.state
    seed = config.seed * 10_007 + rnd.index
    planner = Planner.from_course(course, confidence_z=config.confidence_z)
    taught = planner.skills  # keep skills are watched, never taught
    if config.plan == "adaptive":
        history = {
            s.key: [
                r.probe_accuracy[s.key] for r in state.rounds[: rnd.index + 1] if s.key in r.probe_accuracy
            ]
            for s in taught
        }
        previous = state.rounds[rnd.index - 1].plan.get("difficulty_per_skill") if rnd.index else None
        # The same probe items every round: the gate and learning progress allow for their number.
        taught_keys = {s.key for s in taught}
        sizes = Counter(e.skill for e in probe_items(ctx) if e.skill in taught_keys)
        chosen = planner.plan(history, config.plan_budget, seed=seed, difficulty=previous, probe_sizes=sizes)
    else:
        chosen = random_plan(taught, config.plan_budget, seed=seed, max_levels=planner.max_levels)
    rnd.plan = {
        "items_per_skill": dict(chosen.items_per_skill),
        "difficulty_per_skill": dict(chosen.difficulty_per_skill),
        "reasons": dict(chosen.reasons),
    }
    practised = {k for r in state.rounds[: rnd.index] for k in r.planned_items}
    picked: list[str] = []
    stretch: dict[str, int] = {}
    for skill, count in chosen.items_per_skill.items():
        if not count:
            continue
        level = chosen.difficulty_per_skill.get(skill, 1)
        rng = random.Random(ctx.round_seed(rnd.index, f"plan:{skill}"))
        order = {e.key: rng.random() for e in course.exercises_for(skill, "train")}
        nearest = partial(_nearest, course.exercises_for(skill, "train"), practised, order)

        top = course.max_difficulty(skill)
        if config.plan == "adaptive" and config.levels == "window" and level < top:
            chosen_items = _window(nearest, level, top, count)
            stretch[skill] = sum(e.difficulty > level for e in chosen_items)
        else:
            up = round(count * config.stretch_share) if config.plan == "adaptive" and level < top else 0
            above = [e for e in nearest(level + 1) if e.difficulty == level + 1][:up]
            taken = {e.key for e in above}
            chosen_items = [e for e in nearest(level) if e.key not in taken][: count - len(above)] + above
            if up:
                stretch[skill] = len(above)
        # The planned level first: explanations take a skill's wrong items in this order.
        picked.extend(e.key for e in chosen_items)
    rnd.plan["stretch_per_skill"] = stretch
    rnd.planned_items = [e.key for e in training_safe(ctx.items[k] for k in picked)]
    return {"items_per_skill": rnd.plan["items_per_skill"], "planned": len(rnd.planned_items)}


def _nearest(
    items: Sequence[Exercise], practised: set[str], order: dict[str, float], target: int
) -> list[Exercise]:
    """``items`` not practised before first, then nearest to level ``target``, ties in ``order``."""
    return sorted(items, key=lambda e: (e.key in practised, abs(e.difficulty - target), order[e.key]))


def _window(nearest: Callable[[int], list[Exercise]], level: int, top: int, count: int) -> list[Exercise]:
    """``count`` items spread evenly over levels ``level..top`` (lower levels take the remainder); a
    level short of items is topped up from the items nearest the planned level."""
    span = top - level + 1
    wanted = {lv: count // span + (i < count % span) for i, lv in enumerate(range(level, top + 1))}
    chosen: list[Exercise] = []
    for lv, n in wanted.items():
        chosen += [e for e in nearest(lv) if e.difficulty == lv][:n]
    if len(chosen) < count:  # some level ran out: the nearest other items of the window's lowest level
        taken = {e.key for e in chosen}
        chosen += [e for e in nearest(level) if e.key not in taken][: count - len(chosen)]
    # Interleaved by level, the planned level first: a budget that takes a skill's first wrong items
    # (explanations, generation sources) then samples the whole window, not its lowest level.
    by_level: dict[int, list[Exercise]] = defaultdict(list)
    for e in chosen:
        by_level[e.difficulty].append(e)
    queues = [by_level[lv] for lv in sorted(by_level)]
    return [q[i] for i in range(max(map(len, queues), default=0)) for q in queues if i < len(q)]


# ---------------------------------------------------------------- 3. explain


def _by_need(ctx: Context, rnd: RoundState, items: Sequence[Exercise]) -> list[Exercise]:
    """Round-robin over skills, lowest probe accuracy first; within a skill, input order."""
    by_skill: dict[str, list[Exercise]] = defaultdict(list)
    for e in items:
        by_skill[e.skill].append(e)
    skills = sorted(by_skill, key=lambda s: (rnd.probe_accuracy.get(s, 0.0), s))
    ordered: list[Exercise] = []
    while any(by_skill[s] for s in skills):
        for s in skills:
            if by_skill[s]:
                ordered.append(by_skill[s].pop(0))
    return ordered


def _practise(ctx: Context, rnd: RoundState, items: Sequence[Exercise]) -> None:
    """This round's answers (before training) for any of ``items`` not answered yet, in one batch."""
    todo = [e for e in training_safe(items) if e.key not in rnd.answers]
    texts = answer_plainly(ctx, todo, adapter=rnd.adapter_before)
    for e, text in zip(todo, texts, strict=True):
        rnd.answers[e.key] = graded(e, text)


def _helpful_before(ctx: Context, rnd: RoundState) -> dict[str, list[Explanation]]:
    """Per skill, earlier rounds' explanations that helped: approved first, then by score."""
    by_skill: dict[str, list[Explanation]] = defaultdict(list)
    for r in ctx.state.rounds[: rnd.index]:
        for x in r.explanations:
            if x.helped:
                by_skill[x.skill].append(x)
    for skill in by_skill:
        by_skill[skill].sort(key=lambda x: (x.approved is not True, -(x.score or 0.0), x.id))
    return by_skill


# A step's teacher pass rate is judged once the earlier rounds tried at least this many of its drafts.
TEACHER_PASS_SAMPLE = 8


def teacher_skipped(ctx: Context, rnd: RoundState, step: str) -> str | None:
    """Why the teacher model is not asked for ``step`` ("explain" or "generate") this round, or None.

    It is not asked from the second round on when the course's expert can stand in and the teacher's
    drafts of that step passed the checks less than ``teacher_min_pass`` of the time over at least
    ``TEACHER_PASS_SAMPLE`` drafts of the earlier rounds (a weak teacher's time is spent where it
    produces almost nothing). The reason becomes a warning of the round."""
    floor = ctx.config.teacher_min_pass
    if rnd.index == 0 or floor <= 0 or ctx.expert is None:
        return None
    earlier = ctx.state.rounds[: rnd.index]
    if step == "explain":
        tried = sum(x.candidates for r in earlier for x in r.explanations)
        passed = sum(x.candidates_passed for r in earlier for x in r.explanations)
        what, verb = "explanations", "explain"
    else:
        if not ctx.expert.can_generate:
            return None
        drafts = [g for r in earlier for g in r.generated if g.source == "model"]
        tried, passed = len(drafts), sum(g.kept for g in drafts)
        what, verb = "new items", "write new items"
    if tried < TEACHER_PASS_SAMPLE or passed / tried >= floor:
        return None
    return (
        f"The teacher model was not asked to {verb} this round: its {what} passed the checks {passed} of "
        f"{tried} times in the earlier rounds ({passed / tried:.0%}, below teacher_min_pass {floor:.0%}); "
        "the course's expert wrote them, labelled."
    )


def explain(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """The student practises the planned items (one batch); the teacher explains wrong ones, round-robin
    over skills from the lowest probe accuracy up, until ``explain_budget``. The teacher sees the
    student's answer and up to 2 earlier explanations of the skill that helped, never the gold answer,
    and writes ``explain_samples`` candidates (the first greedy). The first candidate that passes
    :meth:`Context.check` is kept. When none does, the expert's worked solution and diagnosis stand
    in, labelled ``source="expert"``; without an expert the first candidate is kept for display with
    ``passed_gate=False`` and a reason. Where :func:`teacher_skipped` says so, the teacher is asked only
    for the items the expert cannot write (none, for the packs)."""
    planned = [ctx.items[k] for k in rnd.planned_items]
    _practise(ctx, rnd, planned)
    # Only practice (train-split) items, never probe items: what is explained may become training
    # data, and the probe must keep measuring items the student has not trained on.
    wrong_train = [e for e in planned if not rnd.answers[e.key].correct]
    candidates = _by_need(ctx, rnd, wrong_train)
    chosen = candidates[: ctx.config.explain_budget]
    helpful = _helpful_before(ctx, rnd)
    shown = {e.key: helpful.get(e.skill, [])[:2] for e in chosen}
    skipped = teacher_skipped(ctx, rnd, "explain")
    if skipped:
        rnd.warnings.append(skipped)
    # Skipped, the teacher is still asked for any item the expert cannot write a solution of.
    asked = [e for e in chosen if not skipped or ctx.expert.worked_solution(e) is None]  # type: ignore[union-attr]
    conversations = [
        prompts.explanation_prompt(
            e,
            rnd.answers[e.key].text,
            [(prompts.question_text(ctx.items[h.item]), h.final_text) for h in shown[e.key]],
        )
        for e in asked
    ]
    samples = _samples(ctx, conversations, ctx.config.explain_samples)
    written_for = {e.key: [texts[i] for texts in samples] for i, e in enumerate(asked)}
    for e in chosen:
        written = written_for.get(e.key, [])
        verdicts = [ctx.check(e, text) for text in written]
        passed = [text for text, verdict in zip(written, verdicts, strict=True) if verdict.ok]
        first = written[0] if written else ""
        x = Explanation(
            id=f"r{rnd.index}-{e.key}",
            round=rnd.index,
            item=e.key,
            skill=e.skill,
            split=e.split,
            student_answer=rnd.answers[e.key].text,
            text=passed[0] if passed else first,
            teacher_answer=None,
            passed_gate=bool(passed),
            gate_reason=""
            if passed
            else (verdicts[0].reason if verdicts else "the teacher model was not asked"),
            quotes_exam=not passed and bool(first and ctx.guard.exam_copy(first)),
            shown_helpful=[h.id for h in shown[e.key]],
            candidates=len(written),
            candidates_passed=len(passed),
        )
        worked = ctx.expert.worked_solution(e) if ctx.expert is not None and not passed else None
        if worked:  # every candidate failed, or none was asked for: the expert stands in, labelled as such
            mistake = ctx.expert.mistake(e, rnd.answers[e.key].text)  # type: ignore[union-attr]
            x.model_text, x.text, x.source = first, f"Mistake: {mistake}\nSolution: {worked}", "expert"
            x.passed_gate, x.quotes_exam = True, False
        x.teacher_answer = grade(e, x.text).extracted
        rnd.explanations.append(x)
    mine = [x for x in rnd.explanations if x.round == rnd.index]
    dropped = sum(not x.passed_gate for x in mine)
    tried = sum(x.candidates for x in mine)
    return {
        "practised": len(planned),
        "candidates": len(candidates),
        "explained": len(chosen),
        "kept": len(chosen) - dropped,
        "dropped": dropped,
        "by_expert": sum(x.source == "expert" for x in mine),
        "pass_rate": round(sum(x.candidates_passed for x in mine) / tried, 4) if tried else None,
        "teacher_asked": len(asked),
    }


def _samples(ctx: Context, conversations: list[prompts.Conversation], n: int) -> list[list[str]]:
    """``n`` teacher replies per conversation: the greedy one, then ``n - 1`` sampled ones (one batch)."""
    if not conversations:
        return [[] for _ in range(n)]
    greedy = ask(ctx.teacher, conversations, ctx.teacher_params())
    if n == 1:
        return [greedy]
    sampled = ask(ctx.teacher, conversations * (n - 1), ctx.teacher_params(temperature=0.8))
    size = len(conversations)
    return [greedy] + [sampled[j * size : (j + 1) * size] for j in range(n - 1)]


# ---------------------------------------------------------------- 4. score


def siblings_of(ctx: Context, item: Exercise, n: int, round_index: int) -> list[Exercise]:
    """``n`` other train/probe items of the same skill, same level first, seeded per round and item."""
    rng = random.Random(ctx.round_seed(round_index, f"siblings:{item.key}"))
    pool = [
        e
        for e in ctx.course.exercises_for(item.skill)
        if e.split != "exam" and not e.held_out and e.key != item.key
    ]
    pool.sort(key=lambda e: (abs(e.difficulty - item.difficulty), rng.random()))
    return pool[:n]


def score(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """Each explanation through the gate is scored by its effect: the student re-answers its item and
    ``siblings`` other train/probe items of the skill (same level first) with the explanation in
    context; score = mean correct after - mean correct before, in [-1, 1]."""
    kept = [x for x in rnd.explanations if x.passed_gate]
    groups: list[tuple[Explanation, list[Exercise]]] = []
    for x in kept:
        item = ctx.items[x.item]
        group = list(training_safe([item, *siblings_of(ctx, item, ctx.config.siblings, rnd.index)]))
        x.siblings = [e.key for e in group[1:]]
        groups.append((x, group))
    # One batch: the missing "before" answers (no explanation), then every "after" answer.
    missing = list({e.key: e for _, group in groups for e in group if e.key not in rnd.answers}.values())
    after = [(x, e) for x, group in groups for e in group]
    texts = student_replies(
        ctx,
        [(e, prompts.student_prompt(e)) for e in missing]
        + [(e, prompts.student_prompt_with_explanation(e, x.text)) for x, e in after],
        adapter=rnd.adapter_before,
    )
    for e, text in zip(missing, texts[: len(missing)], strict=True):
        rnd.answers[e.key] = graded(e, text)
    after_correct: dict[str, list[bool]] = defaultdict(list)
    for (x, e), text in zip(after, texts[len(missing) :], strict=True):
        after_correct[x.id].append(graded(e, text).correct)
        if e.key == x.item:  # shown beside the answer before on the explanations page
            x.answer_after = text
    scores: list[float] = []
    for x, group in groups:
        x.before = [rnd.answers[e.key].correct for e in group]
        x.after = after_correct[x.id]
        x.score = round(_mean(x.after) - _mean(x.before), 4)
        scores.append(x.score)
    return {
        "scored": len(groups),
        "mean_score": round(_mean(scores), 4) if scores else None,
        "helped": sum(s > 0 for s in scores),
    }


# ---------------------------------------------------------------- 5. generate


def _stated_answer(source: Exercise, draft: prompts.DraftItem) -> str | None:
    """The draft's answer in the form the source's answer type stores, or None if unreadable."""
    if source.answer_type == "number":
        return extract_answer(f"Answer: {draft.answer}", "number")
    if source.answer_type == "choice":
        return extract_answer(f"Answer: {draft.answer}", "choice", draft.options)
    if REMAINDER_RE.match(source.answer):
        return extract_answer(f"Answer: {draft.answer}", "remainder")
    return draft.answer.strip() or None


def generate(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """For up to ``generate_budget`` wrong train items, ``generate_k`` new items each: the teacher is
    asked for ``teacher_generate_k`` of them.
    An item is kept only when verified: by the expert (its answer and every written step) or, without
    one, the packs' solver where it can read the question, else by a second, independent teacher
    answer that must agree. Exam copies, held-out phrasings, duplicates, malformed items and
    disagreements are dropped with a reason. Where the teacher's drafts fall short, an expert that
    can write items completes each source's ``generate_k``, labelled ``source="expert"``; where
    :func:`teacher_skipped` says so, the teacher is not asked and the expert writes them all."""
    config = ctx.config
    planned = [ctx.items[k] for k in rnd.planned_items]
    wrong = [e for e in planned if e.key in rnd.answers and not rnd.answers[e.key].correct]
    budget = config.generate_budget if config.generate_k else 0
    sources = list(training_safe(_by_need(ctx, rnd, wrong)[:budget]))
    skipped = teacher_skipped(ctx, rnd, "generate") if sources else None
    if skipped:
        rnd.warnings.append(skipped)
    asked = 0 if skipped else min(config.generate_k, config.teacher_generate_k)
    texts = ask(
        ctx.teacher,
        [prompts.generation_prompt(e, asked) for e in sources] if asked else [],
        ctx.teacher_params(asked),
    )
    if not asked:
        texts = [""] * len(sources)
    seen = {" ".join(e.prompt.casefold().split()) for e in ctx.course.exercises}
    held_out = ctx.course.held_out_phrasings
    unchecked: list[tuple[GeneratedItem, Exercise]] = []
    for source, text in zip(sources, texts, strict=True):
        for j, draft in enumerate(prompts.parse_generated(text)[:asked]):
            item = GeneratedItem(
                key=f"gen-r{rnd.index}-{source.key}-{j}",
                skill=source.skill,
                prompt=draft.question,
                answer=draft.answer,
                answer_type=source.answer_type,
                solution=draft.solution,
                difficulty=source.difficulty,
                source_item=source.key,
                round=rnd.index,
                teacher=ctx.teacher_name,
                options=list(draft.options),
            )
            rnd.generated.append(item)
            stated = _stated_answer(source, draft)
            identity = " ".join(draft.question.casefold().split())
            reading = read(draft.question)
            item.phrasing = reading.phrasing.key if reading is not None else ""
            if ctx.guard.exam_copy(draft.question):
                item.reason = "copies an exam question"
                continue
            if item.phrasing in held_out:
                item.reason = f"asks in a held-out phrasing ({item.phrasing})"
                continue
            if identity in seen:
                item.reason = "duplicates an existing item"
                continue
            if stated is None:
                item.reason = f"answer {draft.answer!r} is not a {source.answer_type} answer"
                continue
            try:
                exercise = Exercise(
                    key=item.key,
                    skill=item.skill,
                    prompt=item.prompt,
                    answer=stated,
                    answer_type=source.answer_type,
                    options=draft.options,
                    solution=item.solution,
                    difficulty=item.difficulty,
                    split="train",
                )
            except CourseError as exc:
                item.reason = f"malformed: {exc}"
                continue
            seen.add(identity)
            item.answer = stated
            if ctx.expert is not None and ctx.expert.answer(exercise) is not None:
                judged = ctx.expert.check(exercise, item.solution)
                if ctx.expert.answer(exercise) != stated:
                    item.reason = "the expert disagrees with the stated answer"
                elif not judged.ok:
                    item.reason = f"the expert rejects its solution: {judged.reason}"
                else:
                    item.kept, item.verified_by = True, "expert"
                continue
            verdict = verify(exercise)
            if verdict is True:
                item.kept, item.verified_by = True, "solver"
            elif verdict is False:
                item.reason = "the code solver disagrees with the stated answer"
            else:
                unchecked.append((item, exercise))
    # No solver could read these: a second, independent teacher answer must agree (one batch).
    second = ask(ctx.teacher, [prompts.student_prompt(e) for _, e in unchecked], ctx.teacher_params())
    for (item, exercise), text in zip(unchecked, second, strict=True):
        if grade_model_answer(exercise, text).correct:
            item.kept, item.verified_by = True, "teacher_agreement"
        else:
            item.reason = "a second teacher answer disagrees with the stated answer"
    drafted = list(rnd.generated)
    misread = 0
    if ctx.expert is not None and ctx.expert.can_generate:
        rng = random.Random(ctx.round_seed(rnd.index, "expert-items"))
        for source in sources:
            need = config.generate_k - sum(g.kept for g in drafted if g.source_item == source.key)
            # A question misread (its restatement is not the question) is practised in its own
            # wording as well; a slip in the working, in other wordings.
            misread_it = ctx.expert.misread(source, rnd.answers[source.key].text) is not None
            misread += misread_it
            _expert_items(ctx, rnd, source, need, rng, seen, same_phrasing=need // 2 if misread_it else 0)
    kept = sum(g.kept for g in drafted)
    return {
        "sources": len(sources),
        "written": len(drafted),
        "kept": kept,
        "dropped": len(drafted) - kept,
        "pass_rate": round(kept / len(drafted), 4) if drafted else None,
        "by_expert": sum(g.source == "expert" for g in rnd.generated),
        "misread": misread,
        "teacher_asked": asked > 0 and bool(sources),
    }


def _expert_items(
    ctx: Context,
    rnd: RoundState,
    source: Exercise,
    need: int,
    rng: random.Random,
    seen: set[str],
    *,
    same_phrasing: int = 0,
) -> None:
    """Up to ``need`` new items like ``source`` written by the expert, never a duplicate or an exam
    copy: up to ``same_phrasing`` in the source's own phrasing first, the rest in other phrasings."""
    assert ctx.expert is not None
    expert = ctx.expert
    made = 0

    def fill(target: int, same: bool) -> None:
        nonlocal made
        for _ in range(4):  # a few draws: a small skill may run out of new numbers
            if made >= target:
                return
            wanted = target - made
            for e in expert.new_items(
                source, wanted, rng, avoid=frozenset({source.phrasing}), same_phrasing=wanted if same else 0
            ):
                identity = " ".join(e.prompt.casefold().split())
                if identity in seen or ctx.guard.exam_copy(e.prompt) or made >= target:
                    continue
                seen.add(identity)
                key = f"gen-r{rnd.index}-{source.key}-x{made}"
                rnd.generated.append(_expert_item(expert, e, key, source.key, rnd.index))
                made += 1

    fill(min(same_phrasing, need), same=True)
    fill(need, same=False)


def _expert_item(expert: Expert, e: Exercise, key: str, source_item: str, round_index: int) -> GeneratedItem:
    """An item the expert wrote, kept as verified by it."""
    return GeneratedItem(
        key=key,
        skill=e.skill,
        prompt=e.prompt,
        answer=e.answer,
        answer_type=e.answer_type,
        solution=e.solution,
        difficulty=e.difficulty,
        source_item=source_item,
        round=round_index,
        teacher=f"expert: {expert.name}",
        kept=True,
        verified_by="expert",
        source="expert",
        phrasing=e.phrasing,
    )


def generated_exercise(item: GeneratedItem) -> Exercise:
    return Exercise(
        key=item.key,
        skill=item.skill,
        prompt=item.prompt,
        answer=item.answer,
        answer_type=item.answer_type,
        options=tuple(item.options),
        solution=item.solution,
        difficulty=item.difficulty,
        split="train",
        phrasing=item.phrasing,
    )


# ---------------------------------------------------------------- 6. build data


def _sft(exercise: Exercise, answer: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [*prompts.student_prompt(exercise), {"role": "assistant", "content": answer}],
        "meta": meta,
    }


def _pair(exercise: Exercise, chosen: str, rejected: str, meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": prompts.student_prompt(exercise),
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "meta": meta,
    }


def replay_count(new: int, available: int, share: float) -> int:
    """Earlier records to mix in so they make ``share`` of the set: ``round(new * share / (1 - share))``."""
    return min(available, round(new * share / (1 - share))) if share > 0 else 0


def least_trained_first(
    pool: Sequence[dict[str, Any]], trained: Counter[str | None], count: int, rng: random.Random
) -> list[dict[str, Any]]:
    """``count`` records of ``pool``, one at a time from the skill with the fewest records so far
    (``trained``: this round's new records per skill, then each pick counts), a seeded random record
    of that skill; ties go to the skill first in name order.

    A round that trains one skill hard (multiplication) and another not at all (a one-digit sum the
    student had learned) would otherwise replay the earlier rounds in their own proportions, and the
    skill without new records would get a few: the replay goes where this round is thinnest.
    """
    by_skill: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    for record in pool:
        by_skill[record["meta"].get("skill")].append(record)
    for records in by_skill.values():
        rng.shuffle(records)
    counts = {skill: trained.get(skill, 0) for skill in by_skill}
    chosen: list[dict[str, Any]] = []
    while len(chosen) < count and any(by_skill.values()):
        skill = min((s for s, rs in by_skill.items() if rs), key=lambda s: (counts[s], str(s)))
        chosen.append(by_skill[skill].pop())
        counts[skill] += 1
    return chosen


def build_data(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """SFT records (the student prompt, the worked solution) from explanations that helped (through the
    gate with score > 0, or approved by a person; a person's edit replaces the text) and from kept
    generated items; DPO pairs kept apart. Earlier rounds' records come back (never one a person has
    since rejected or rewritten): all of them with ``schedule="from_base"``, a ``replay_share`` with
    ``"continue"``. Then the base student's own right answers on the keep set make ``keep_share`` of
    the set (:func:`keep_records`). Every record passes the exam guard."""
    state = ctx.state
    earlier = state.rounds[: rnd.index]
    # An explanation trains once, unless a person edited it since: the edit is a new record.
    used = {
        (r["meta"].get("explanation"), r["messages"][-1]["content"]) for p in earlier for r in p.sft_records
    }
    # This round's explanations, and earlier ones approved by a person since their round was built.
    candidates = [x for p in earlier for x in p.explanations if x.approved is True] + rnd.explanations
    # Train-split items only: a run saved before probe items stopped being explained may hold some.
    helped = [
        x
        for x in candidates
        if x.helped and x.split == "train" and (x.id, prompts.solution_part(x.final_text)) not in used
    ]
    training_safe(ctx.items[x.item] for x in helped)
    sft = [
        _sft(
            ctx.items[x.item],
            prompts.solution_part(x.final_text),
            {
                "source": "explanation",
                "explanation": x.id,
                "item": x.item,
                "skill": x.skill,
                "round": rnd.index,
                "score": x.score,
                "approved": x.approved,
                "edited": x.edited is not None,
            },
        )
        for x in helped
    ]
    for g in rnd.generated:
        if g.kept:
            sft.append(
                _sft(
                    generated_exercise(g),
                    g.solution,
                    {
                        "source": "generated",
                        "item": g.key,
                        "source_item": g.source_item,
                        "skill": g.skill,
                        "round": rnd.index,
                        "teacher": g.teacher,
                        "verified_by": g.verified_by,
                    },
                )
            )
    new = len(sft)
    # Replay never brings back what a person has since rejected or rewritten.
    current = {x.id: x for p in earlier for x in p.explanations}

    def still_stands(record: dict[str, Any]) -> bool:
        x = current.get(record["meta"].get("explanation"))
        return x is None or (
            x.helped and record["messages"][-1]["content"] == prompts.solution_part(x.final_text)
        )

    pool = [
        r
        for p in earlier
        for r in p.sft_records
        if "replayed_from" not in r["meta"] and r["meta"].get("source") != "keep" and still_stands(r)
    ]
    if ctx.config.schedule == "from_base":  # each round trains from the base on every record so far
        replayed = pool
    else:
        rng = random.Random(ctx.round_seed(rnd.index, "replay"))
        count = replay_count(new, len(pool), ctx.config.replay_share)
        if ctx.config.replay_mix == "least_trained":
            replayed = least_trained_first(pool, Counter(r["meta"].get("skill") for r in sft), count, rng)
        else:
            replayed = rng.sample(pool, count)
    sft += [
        {**r, "meta": {**r["meta"], "replayed_from": r["meta"]["round"], "round": rnd.index}}
        for r in replayed
    ]
    keep = keep_records(ctx, rnd, len(sft), ctx.config.keep_share)
    sft += keep

    everything = [
        x
        for p in [*earlier, rnd]
        for x in p.explanations
        if not x.quotes_exam and (x.passed_gate or x.approved is False)
    ]
    pairs = []
    for x in helped:
        exercise, solution = ctx.items[x.item], prompts.solution_part(x.final_text)
        if x.student_answer.strip() and x.student_answer.strip() != solution:
            pairs.append(
                _pair(
                    exercise,
                    solution,
                    x.student_answer.strip(),
                    {
                        "kind": "solution_over_wrong_answer",
                        "item": x.item,
                        "chosen": x.id,
                        "round": rnd.index,
                    },
                )
            )
        for other in everything:
            worse = other.item == x.item and other.id != x.id and not other.helped
            if worse and prompts.solution_part(other.final_text) != solution:
                pairs.append(
                    _pair(
                        exercise,
                        solution,
                        prompts.solution_part(other.final_text),
                        {
                            "kind": "helped_over_not",
                            "item": x.item,
                            "chosen": x.id,
                            "rejected": other.id,
                            "round": rnd.index,
                        },
                    )
                )
    ctx.guard.check_records(sft + pairs)
    rnd.sft_records, rnd.dpo_records, rnd.replayed = sft, pairs, len(replayed)
    rnd.keep_records = len(keep)
    return {"sft": len(sft), "new": new, "replayed": len(replayed), "keep": len(keep), "dpo": len(pairs)}


def keep_groups(ctx: Context) -> list[str]:
    """The skills a run must not lose: the course's keep skills, and every taught skill the base
    student already answers (:func:`answers_well`) on the probe."""
    base = ctx.state.base_probe
    groups = [s.key for s in ctx.course.keep_skills]
    for s in ctx.course.taught_skills:
        answered = [base[e.key].correct for e in probe_items(ctx) if e.skill == s.key and e.key in base]
        if answers_well(ctx, answered):
            groups.append(s.key)
    return groups


def answers_well(ctx: Context, answered: Sequence[bool]) -> bool:
    """At least ``keep_threshold`` right of 4 answers or more: on fewer, one lucky answer would make a
    skill to keep or a learned one (and veto rounds)."""
    return len(answered) >= 4 and _mean(answered) >= ctx.config.keep_threshold


def own_words(text: str) -> str | None:
    """A right answer as the student wrote it, for replay: up to its "Answer:" line, or the whole text
    when it ends like a finished sentence (a reply cut off by the token limit teaches cutting off)."""
    lines = text.strip().split("\n")
    for i, line in enumerate(lines):
        if line.strip().lower().startswith("answer:"):
            return "\n".join(lines[: i + 1]).strip()
    stripped = text.strip()
    return stripped if stripped and stripped[-1] in ".!?)0123456789" else None


KEEP_ITEMS_PER_SKILL = 60  # the expert's extra items per keep skill: a course holds only a few


def _keep_pool(ctx: Context, rnd: RoundState) -> dict[str, Answer]:
    """The base student's right answers on the train items of the keep groups, and on items the expert
    writes for the keep skills (training phrasings only), asked once per run. Right is :func:`graded`'s
    strict sense (no false step or claim in the whole reply, so none in the replayed part): a weak
    base's "11 is a larger number than 32." is right by its last number alone, and replaying it
    teaches a coin flip."""
    state = ctx.state
    if not state.keep_pool:
        groups = set(keep_groups(ctx))
        items = [e for e in ctx.course.split("train") if e.skill in groups]
        state.keep_items = _expert_keep_items(ctx)
        items += [generated_exercise(g) for g in state.keep_items]
        texts = answer_plainly(ctx, items, adapter=None)
        state.keep_pool = {
            e.key: answer
            for e, text in zip(items, texts, strict=True)
            if (answer := graded(e, text)).correct and own_words(text)
        }
    return state.keep_pool


def _expert_keep_items(ctx: Context) -> list[GeneratedItem]:
    if ctx.expert is None or not ctx.expert.can_generate:
        return []
    rng = random.Random(ctx.round_seed(0, "keep-items"))
    seen = {" ".join(e.prompt.casefold().split()) for e in ctx.course.exercises}
    made: list[GeneratedItem] = []
    for skill in ctx.course.keep_skills:
        sources = ctx.course.exercises_for(skill.key, "train")
        if not sources:
            continue
        for e in ctx.expert.new_items(sources[0], KEEP_ITEMS_PER_SKILL, rng, avoid=frozenset()):
            identity = " ".join(e.prompt.casefold().split())
            if identity in seen or ctx.guard.exam_copy(e.prompt):
                continue
            seen.add(identity)
            made.append(_expert_item(ctx.expert, e, f"keep-{skill.key}-{len(made)}", sources[0].key, 0))
    return made


def keep_records(ctx: Context, rnd: RoundState, n_task: int, share: float) -> list[dict[str, Any]]:
    """Self-distillation: the base student's own right answers, so they make ``share`` of a set of
    ``n_task`` other records (capped by how many there are), drawn seeded per round."""
    if share <= 0 or n_task == 0 or not (ctx.course.keep_skills or ctx.config.keep_threshold < 1):
        return []
    pool = _keep_pool(ctx, rnd)
    rng = random.Random(ctx.round_seed(rnd.index, f"keep:{share}"))
    chosen = rng.sample(sorted(pool), replay_count(n_task, len(pool), share))
    items = ctx.items | {g.key: generated_exercise(g) for g in ctx.state.keep_items}
    return [
        _sft(
            items[key],
            own_words(pool[key].text) or pool[key].text,
            {"source": "keep", "item": key, "skill": items[key].skill, "round": rnd.index},
        )
        for key in chosen
    ]


def trains_on_approval(x: Explanation) -> bool:
    """Whether a person's approval puts ``x`` into :func:`feedback_records`' SFT data: approved (or
    edited), of a train-split item, quoting no exam question."""
    return x.approved is True and x.split == "train" and not x.quotes_exam


def feedback_records(
    course: Course, explanations: Sequence[Explanation]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Training records from people's ratings alone, for fine-tuning between rounds.

    SFT: every explanation of a train-split item a person approved (its edit when there is one),
    worked solution only, as in :func:`build_data` (probe items measure; they never train). Preference
    pairs: on the same item, an approved explanation over one a
    person rejected. Explanations that quote an exam question never count; every record passes the
    exam guard (raises :class:`~tutor.core.courses.course.ExamLeakError` otherwise).
    """
    items = {e.key: e for e in course.exercises}
    rated = [x for x in explanations if not x.quotes_exam and x.approved is not None and x.item in items]
    approved = [x for x in rated if trains_on_approval(x)]
    training_safe(items[x.item] for x in approved)
    sft = [
        _sft(
            items[x.item],
            prompts.solution_part(x.final_text),
            {
                "source": "feedback",
                "explanation": x.id,
                "item": x.item,
                "skill": x.skill,
                "round": x.round,
                "approved": True,
                "edited": x.edited is not None,
            },
        )
        for x in approved
    ]
    pairs = []
    for good in approved:
        chosen = prompts.solution_part(good.final_text)
        for bad in rated:
            rejected = prompts.solution_part(bad.final_text)
            if bad.approved is False and bad.item == good.item and rejected != chosen:
                pairs.append(
                    _pair(
                        items[good.item],
                        chosen,
                        rejected,
                        {
                            "kind": "approved_over_rejected",
                            "item": good.item,
                            "chosen": good.id,
                            "rejected": bad.id,
                            "round": good.round,
                        },
                    )
                )
    ExamGuard(course).check_records(sft + pairs)
    return sft, pairs


# ---------------------------------------------------------------- 7. train


def train(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """``train_fn(records, round_index, parent_adapter, attempt=, lr_scale=)``; a returned path is loaded
    into the student (adapter ``round<i>``, ``round<i>-try<j>`` for a retry). With
    ``acceptance="probe"`` the new adapter is kept only when :func:`~.acceptance.judge` accepts it on
    the probe; a rejected try is retried (up to ``round_tries``) with more keep replay and a lower
    learning rate (:func:`~.acceptance.retry_settings`), and when every try is rejected the round is
    rolled back: the adapter stays the previous one. A round that continues an adapter trains at
    ``continue_lr`` times the rate. No records, or training disabled (None), leave the
    adapter as it was. The parent is the current adapter, or the base with ``schedule="from_base"``."""
    state, config, records = ctx.state, ctx.config, rnd.sft_records
    parent = None if config.schedule == "from_base" else state.adapter_path
    previous = {"adapter_path": state.adapter_path, "adapter_name": state.adapter_name}
    if not records:
        rnd.train = {**previous, "records": 0, "note": "no training data this round; the adapter stays"}
        return dict(rnd.train)
    if ctx.train_fn is None:
        raise ValueError("a train_fn is needed to train (it may return None when training is disabled)")
    tries = config.round_tries if config.acceptance == "probe" else 1
    rnd.tries = []  # a try cut short by an interruption is tried again (its training job is reused)
    accepted = None
    for attempt in range(tries):
        share, lr_scale = retry_settings(attempt, config.keep_share)
        if parent is not None:
            lr_scale *= config.continue_lr
        task = [r for r in records if r["meta"].get("source") != "keep"]
        these = records if attempt == 0 else task + keep_records(ctx, rnd, len(task), share)
        ctx.guard.check_records(these)
        path = ctx.train_fn(these, rnd.index, parent, attempt=attempt, lr_scale=lr_scale)
        if path is None:
            rnd.train = {**previous, "records": len(records), "note": "training disabled; the adapter stays"}
            return dict(rnd.train)
        name = f"round{rnd.index}" + (f"-try{attempt}" if attempt else "")
        ctx.student.load_adapter(name, str(path))
        verdict = _judge(ctx, rnd, name)
        rnd.tries.append(
            {
                "attempt": attempt,
                "adapter_path": str(path),
                "adapter_name": name,
                "records": len(these),
                "keep_share": share,
                "lr_scale": lr_scale,
                **verdict,
            }
        )
        if verdict["accepted"]:
            accepted = rnd.tries[-1]
            break
    if accepted is None:
        why = rnd.tries[-1]["reason"]
        rnd.train = {
            **previous,
            "records": len(records),
            "rolled_back": True,
            "note": f"rolled back after {len(rnd.tries)} tr{'y' if len(rnd.tries) == 1 else 'ies'} ({why}); "
            "the adapter stays",
        }
        return dict(rnd.train)
    state.adapter_path, state.adapter_name = accepted["adapter_path"], accepted["adapter_name"]
    how = "from the base" if parent is None else f"continuing {parent}"
    retried = f" (try {accepted['attempt'] + 1})" if accepted["attempt"] else ""
    rnd.train = {
        "adapter_path": state.adapter_path,
        "adapter_name": state.adapter_name,
        "records": accepted["records"],
        "note": f"trained on {accepted['records']} records {how}{retried}; {accepted['reason']}",
    }
    return dict(rnd.train)


def _judge(ctx: Context, rnd: RoundState, adapter: str) -> dict[str, Any]:
    """The probe answered with ``adapter``, and the acceptance verdict on it (always accepted with
    ``acceptance="always"``, without examining)."""
    if ctx.config.acceptance == "always":
        return {"accepted": True, "reason": "accepted without a probe check (acceptance=always)"}
    items = probe_items(ctx)
    learned = learned_skills(ctx, rnd, items)
    # A learned skill is judged on every probe item it has, asked of the adapter before once a round.
    diagnosed = {e.key for e in items}
    extra = [e for es in learned.values() for e in es if e.key not in diagnosed]
    unasked = [e for e in extra if e.key not in rnd.answers]
    for e, text in zip(unasked, answer_plainly(ctx, unasked, adapter=rnd.adapter_before), strict=True):
        rnd.answers[e.key] = graded(e, text)
    texts = answer_plainly(ctx, [*items, *extra], adapter=adapter)
    answers = {e.key: graded(e, t) for e, t in zip([*items, *extra], texts, strict=True)}
    taught = {s.key for s in ctx.course.taught_skills}
    held = [e for e in items if e.held_out and e.skill in taught]
    groups = keep_groups(ctx)
    base = ctx.state.base_probe
    # After the first round the adapter before is not the base: the gain is judged against the base,
    # the adapter it replaces only for a fall beyond noise (acceptance module docstring).
    against_base = rnd.adapter_before is not None and all(e.key in base for e in held)
    judgement = judge(
        [rnd.answers[e.key].correct for e in held],
        [answers[e.key].correct for e in held],
        {g: [base[e.key].correct for e in items if e.skill == g and e.key in base] for g in groups},
        {g: [answers[e.key].correct for e in items if e.skill == g and e.key in base] for g in groups},
        z=ctx.config.confidence_z or 1.96,
        held_out_base=[base[e.key].correct for e in held] if against_base else None,
        learned_before={s: [rnd.answers[e.key].correct for e in es] for s, es in learned.items()},
        learned_now={s: [answers[e.key].correct for e in es] for s, es in learned.items()},
    )
    if judgement.accepted:
        rnd.probe_after = answers
    return {
        "accepted": judgement.accepted,
        "reason": judgement.reason,
        "held_out_before": judgement.held_out_before,
        "held_out_after": judgement.held_out_after,
        "held_out_base": judgement.held_out_base,
        "keep": judgement.keep,
        "learned": judgement.learned,
        "probe": _per_skill(items, answers),
    }


def learned_skills(ctx: Context, rnd: RoundState, items: Sequence[Exercise]) -> dict[str, list[Exercise]]:
    """The acceptance rule's learned skills (rule 4 of :mod:`.acceptance`), with *all* their probe items
    (not only the ``probe_per_skill`` the diagnosis asks: a few items a skill cannot see a skill
    undone on one wording): after the first round, each taught skill the adapter before the round
    answers well (:func:`answers_well`) on the diagnosed ``items``."""
    if rnd.adapter_before is None:
        return {}
    learned = {}
    for skill in ctx.course.taught_skills:
        answered = [
            rnd.answers[e.key].correct for e in items if e.skill == skill.key and e.key in rnd.answers
        ]
        if answers_well(ctx, answered):
            learned[skill.key] = list(ctx.course.exercises_for(skill.key, "probe"))
    return learned


# ---------------------------------------------------------------- 8. re-examine


def teacher_hacking_warning(
    prev_agreement: float | None,
    agreement: float | None,
    prev_accuracy: float | None,
    accuracy: float | None,
    *,
    rise: float = 0.10,
    stall: float = 0.02,
) -> str | None:
    """A warning when the student agrees more with the teacher but is not more often right.

    Fires when agreement rose by at least ``rise`` (absolute, default 0.10) since the previous
    measurement (the previous round's exam; for round 0 the base model's) while gold exam
    accuracy rose by less than ``stall`` (default 0.02, or fell): the student is learning to
    copy the teacher, mistakes included, instead of the skill.
    """
    if None in (prev_agreement, agreement, prev_accuracy, accuracy):
        return None
    up, gain = agreement - prev_agreement, accuracy - prev_accuracy  # type: ignore[operator]
    if up >= rise and gain < stall:
        return (
            f"possible teacher hacking: agreement with the teacher rose {prev_agreement:.2f} -> "
            f"{agreement:.2f} (+{up:.2f} >= {rise}) while exam accuracy went {prev_accuracy:.2f} -> "
            f"{accuracy:.2f} ({gain:+.2f} < {stall})"
        )
    return None


def _agreement(
    exam: Sequence[Exercise], answers: dict[str, Answer], teacher: dict[str, Answer]
) -> dict[str, Any]:
    same, on_errors = [], []
    for e in exam:
        mine, theirs = answers[e.key], teacher[e.key]
        key_t = answer_key(e, theirs.text)
        agree = key_t is not None and answer_key(e, mine.text) == key_t
        same.append(agree)
        if not theirs.correct:
            on_errors.append(agree)
    return {
        "agreement": round(_mean(same), 4),
        "agreement_on_teacher_errors": round(_mean(on_errors), 4) if on_errors else None,
    }


def reexamine(ctx: Context, rnd: RoundState) -> dict[str, Any]:
    """The student (new adapter) on the exam split per skill, beside the base model's and the teacher's
    exam answers (each asked once per run); probe items of untaught skills re-answered (forgetting);
    the general probe by likelihood against the base model; agreement with the teacher next to gold
    accuracy, with the teacher-hacking and forgetting warnings. The exam is asked in the last round
    only, unless ``exam_every_round``: it is the run's report, and each asking costs the whole split."""
    state, config = ctx.state, ctx.config
    examined = config.exam_every_round or rnd.index == config.rounds - 1
    exam = list(ctx.course.split("exam")) if examined else []
    taught = {s for s, n in rnd.plan.get("items_per_skill", {}).items() if n}
    untaught = [s.key for s in ctx.course.skills if s.key not in taught]
    forgetting_items: list[Exercise] = []
    for skill in untaught:  # probe items answered in this round's diagnose, before training
        answered = [e for e in probe_items(ctx) if e.skill == skill and e.key in rnd.answers]
        forgetting_items.extend(answered[: config.forgetting_probe_per_skill])
    # The accepted try answered the whole probe with this very adapter: its forgetting items are not
    # asked again (the same greedy answers; diagnose reuses them the same way).
    known = rnd.probe_after if rnd.train.get("adapter_name") == state.adapter_name else {}
    asked = exam + [e for e in forgetting_items if e.key not in known]
    texts = answer_plainly(ctx, asked, adapter=state.adapter_name)
    answers = {e.key: graded(e, t) for e, t in zip(asked, texts, strict=True)}
    answers.update({e.key: known[e.key] for e in forgetting_items if e.key in known})
    if not state.base_exam:  # the base model's exam answers, once per run
        if state.adapter_name is None:  # still the base model: these are its answers
            state.base_exam = {e.key: answers[e.key] for e in exam}
        else:
            state.base_exam = {
                e.key: graded(e, t)
                for e, t in zip(exam, answer_plainly(ctx, exam, adapter=None), strict=True)
            }
    general = list(ctx.general) if _can_score(ctx.student) else []
    if general:
        answers.update(general_answers(ctx, general, adapter=state.adapter_name))
        if not state.base_general:
            state.base_general = (
                {e.key: answers[e.key] for e in general}
                if state.adapter_name is None
                else general_answers(ctx, general, adapter=None)
            )
    if not state.teacher_exam:
        written = ctx.config.choice_scoring == "generate" or all(e.answer_type != "choice" for e in exam)
        if ctx.teacher is ctx.student and written:
            # One model teaching itself: its exam answers without an adapter are the base's, same prompt,
            # same greedy settings; not asked twice.
            state.teacher_exam = {e.key: state.base_exam[e.key] for e in exam}
        else:
            # Answers, not explanations: the student's length is enough.
            said = ask(ctx.teacher, [prompts.student_prompt(e) for e in exam], ctx.student_params())
            state.teacher_exam = {e.key: graded(e, t) for e, t in zip(exam, said, strict=True)}

    taught_keys = {s.key for s in ctx.course.taught_skills}
    scored = [e for e in exam if e.skill in taught_keys]  # keep skills are reported apart
    accuracy = _accuracy(scored, answers)
    base_accuracy = _accuracy(scored, state.base_exam)
    phrasings = {
        f"{prefix}{group}_accuracy": _accuracy([e for e in scored if e.held_out == held], source)
        for prefix, source in (("", answers), ("base_", state.base_exam))
        for group, held in (("held_out", True), ("trained_phrasing", False))
    }
    keep_exam = {
        s.key: {
            "base": _accuracy([e for e in exam if e.skill == s.key], state.base_exam),
            "now": _accuracy([e for e in exam if e.skill == s.key], answers),
        }
        for s in ctx.course.keep_skills
        if exam
    }
    agreement = _agreement(scored, answers, state.teacher_exam) if scored else {}
    base_agreement = _agreement(scored, state.base_exam, state.teacher_exam) if scored else {}
    # The last round that asked the exam before this one (none: the base model).
    previous = next(
        (r.exam for r in reversed(state.rounds[: rnd.index]) if r.exam.get("accuracy") is not None), None
    )
    prev_accuracy = previous["accuracy"] if previous else base_accuracy
    prev_agreement = previous.get("agreement") if previous else base_agreement.get("agreement")
    before = {
        s: _mean([rnd.answers[e.key].correct for e in forgetting_items if e.skill == s])
        for s in untaught
        if any(e.skill == s for e in forgetting_items)
    }
    after = {s: _mean([answers[e.key].correct for e in forgetting_items if e.skill == s]) for s in before}
    rnd.exam = {
        "adapter": state.adapter_name,
        "examined": examined,
        "accuracy": accuracy,
        "per_skill": _per_skill(exam, answers),
        "base_accuracy": base_accuracy,
        "base_per_skill": _per_skill(exam, state.base_exam),
        **phrasings,
        "per_skill_held_out": _per_skill([e for e in exam if e.held_out], answers),
        "base_per_skill_held_out": _per_skill([e for e in exam if e.held_out], state.base_exam),
        "per_skill_trained_phrasing": _per_skill([e for e in exam if not e.held_out], answers),
        "base_per_skill_trained_phrasing": _per_skill([e for e in exam if not e.held_out], state.base_exam),
        "keep": keep_exam,
        "vs_base": _difference(accuracy, base_accuracy),
        "vs_previous": _difference(accuracy, prev_accuracy),
        "teacher_accuracy": _accuracy(scored, state.teacher_exam),
        **agreement,
        "base_agreement": base_agreement.get("agreement"),
        "forgetting": {s: {"before": round(before[s], 4), "after": round(after[s], 4)} for s in before},
        "general": _general_result(general, answers, state.base_general) if general else None,
        "answers": {
            e.key: {
                "text": answers[e.key].text,
                "extracted": answers[e.key].extracted,
                "correct": answers[e.key].correct,
            }
            for e in exam
        },
    }
    warning = teacher_hacking_warning(
        prev_agreement,
        agreement.get("agreement"),
        prev_accuracy,
        accuracy,
        rise=config.hacking_agreement_rise,
        stall=config.hacking_accuracy_stall,
    )
    forgot = forgetting_warning(rnd.exam["general"], drop=config.forgetting_warning_drop)
    rnd.warnings.extend(w for w in (warning, forgot) if w)
    return {
        k: rnd.exam.get(k) for k in ("accuracy", "vs_base", "vs_previous", "agreement", "teacher_accuracy")
    } | {"general": (rnd.exam["general"] or {}).get("accuracy"), "warning": warning, "forgetting": forgot}


def _accuracy(items: Sequence[Exercise], answers: dict[str, Answer]) -> float | None:
    """Share of ``items`` answered right (None for no items)."""
    return round(_mean([answers[e.key].correct for e in items]), 4) if items else None


def _difference(value: float | None, reference: float | None) -> float | None:
    return None if value is None or reference is None else round(value - reference, 4)


def _can_score(llm: LLM) -> bool:
    try:
        llm.reply_loglikelihood([])
    except UnsupportedOperation:
        return False
    return True


def general_answers(ctx: Context, items: Sequence[Exercise], *, adapter: str | None) -> dict[str, Answer]:
    """The general probe answered by likelihood, cloze style: the bare question, each option as the
    whole reply, the likeliest one chosen (one scoring batch). Why cloze: docs/decisions.md."""
    requests = [([{"role": "user", "content": e.prompt}], option) for e in items for option in e.options]
    scores = ctx.student.reply_loglikelihood(requests, adapter=adapter)
    answers, start = {}, 0
    for e in items:
        best = e.options[choose_by_likelihood(e.options, scores[start : start + len(e.options)])]
        start += len(e.options)
        answers[e.key] = graded(e, f"Answer: {best}")
    return answers


def _general_result(
    items: Sequence[Exercise], answers: dict[str, Answer], base: dict[str, Answer]
) -> dict[str, Any]:
    return {
        "items": len(items),
        "accuracy": round(_mean([answers[e.key].correct for e in items]), 4),
        "base_accuracy": round(_mean([base[e.key].correct for e in items]), 4),
        "answers": {e.key: {"text": answers[e.key].text, "correct": answers[e.key].correct} for e in items},
    }


def forgetting_warning(general: dict[str, Any] | None, *, drop: float) -> str | None:
    """A warning when the student answers the general probe worse than the base model did by at least
    ``drop`` (absolute): training on the course is costing it what the course does not teach."""
    if not general or drop <= 0:
        return None
    fell = general["base_accuracy"] - general["accuracy"]
    if fell < drop - 1e-9:
        return None
    return (
        f"possible forgetting: the general probe ({general['items']} questions outside the course) fell "
        f"from {general['base_accuracy']:.2f} (base model) to {general['accuracy']:.2f} (-{fell:.2f})"
    )


STEP_FUNCTIONS: dict[str, Callable[[Context, RoundState], dict[str, Any]]] = {
    "diagnose": diagnose,
    "plan": plan,
    "explain": explain,
    "score": score,
    "generate": generate,
    "build_data": build_data,
    "train": train,
    "reexamine": reexamine,
}
