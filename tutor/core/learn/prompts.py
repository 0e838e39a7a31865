"""Tutoring one human learner: the teacher's prompts and the parsers for what it writes back.

Plain Python (no Django): the services in ``tutor.learn.services`` gather the learner's state from the
database into a :class:`LearnerContext` and pass it here.

Rules that matter:
- every prompt is **tailored**: the learner's stated level, their mastery per skill, their recent
  mistakes, and what they said about the last explanation ("too hard") are in it;
- on a mistake the teacher **decides first** (error type, remediation strategy, intention), in a
  short separate call parsed by :func:`parse_decision`, and then writes the reply that follows the
  decision. Parsing never fails: an unusable decision becomes :func:`fallback_decision`, so a
  rambling or echoing teacher still gets a sane strategy, and ``parsed`` records which it was;
- **scaffolding** (the default) means hints and guiding questions before answers: the reply may
  not give the exercise's final answer, and the fallback strategy escalates with the number of
  tries (guiding question → hint → worked example) instead of jumping to the solution;
- model output is untrusted text of any length: :func:`clip` keeps it to the caps below, and
  whatever the learner typed is clipped before it reaches a prompt;
- each prompt has its **instructions** beside it (:func:`explanation_instructions`,
  :func:`remediation_instructions`, :func:`question_instructions`): the texts that tell the teacher
  how to write (the system prompt, the learner's level, the decision on a mistake), never what it
  writes about (the question, the example, the learner's answer). A reply that repeats one of them
  is not shown (``tutor.core.learn.vetting``);
- an explanation teaches the skill **through a worked example** whose gold answer is known (never
  the learner's own exercise), so its final answer can be checked before anyone reads it.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

Conversation = list[dict[str, str]]

LEVELS: dict[str, str] = {
    "beginner": "a beginner: use plain words, small steps and no jargon",
    "intermediate": "an intermediate learner: be brief and precise",
    "advanced": "an advanced learner: be concise; skip what is obvious",
}
DEFAULT_LEVEL = "beginner"

STRATEGIES: dict[str, str] = {
    "guiding_question": "ask one guiding question that leads the learner to find the mistake",
    "hint": "give one hint about the step that went wrong",
    "worked_example": "show a worked example of a similar exercise (different numbers)",
    "reexplain": "re-explain the concept the mistake shows is missing",
}
# Scaffolding: what to try on the first, second, third… miss of the same exercise.
SCAFFOLD_LADDER = ("guiding_question", "hint", "worked_example")

ERROR_TYPES: dict[str, str] = {
    "slip": "a careless slip (the method is right)",
    "procedural": "a wrong or skipped step in the method",
    "conceptual": "a misconception about the concept",
    "misread": "misread the question",
    "no_answer": "no real answer",
    "other": "something else",
}

# Caps: model output is untrusted and unbounded; prompts stay short for small teachers.
MAX_REPLY_CHARS = 3000
MAX_LEARNER_TEXT_CHARS = 500
MAX_QUESTION_CHARS = 1000
MAX_INTENTION_CHARS = 300
MAX_MISTAKES_SHOWN = 3
DECISION_MAX_TOKENS = 96
GRADING_MAX_TOKENS = 64

TUTOR_SYSTEM = (
    "You are a patient, encouraging tutor for one learner. You keep replies short, correct "
    "and written for this learner."
)
ALTERNATIVE_STYLE = "Start with one concrete worked example, then state the general rule in one sentence."
EXPLAIN_SKILL = "Explain this skill to the learner"
EXPLAIN_THROUGH_EXAMPLE = (
    "Teach it through the worked example above: solve it step by step for the learner, in under 120 "
    "words, and finish with the line"
)
NO_ANSWER_GIVEN = (
    "Do NOT state the correct answer to the learner's exercise; the learner must get there themselves."
)
WRITE_REPLY = "Write your reply to the learner now, in under 80 words, following that decision."
SHOW_EXAMPLE = "Show the learner this similar exercise, solved step by step, and finish with the line"
SHOW_SOLUTION = (
    "Show the learner where their answer went wrong and the right working, and finish with the line"
)
ANSWER_QUESTION = "Answer in under 100 words."
NO_GIVEAWAY = "Do not give away the answer to their current exercise."
DECISION_FORMAT = (
    "Decide before you teach. Reply with exactly three lines and nothing else:\n"
    "Error type: <one error type key>\nStrategy: <one strategy key>\n"
    "Intention: <one sentence: what the learner should realise>"
)


@dataclass(frozen=True)
class Mistake:
    """A recent wrong answer of the learner (any skill)."""

    question: str
    answer: str


@dataclass(frozen=True)
class LearnerContext:
    """What the teacher knows about the learner when it writes."""

    level: str = DEFAULT_LEVEL
    mastery: Sequence[tuple[str, float]] = ()  # (skill name, P(known)) in course order, started skills only
    mistakes: Sequence[Mistake] = ()  # most recent first
    difficulty_feedback: str = ""  # "too_easy" / "too_hard" said about the last explanation, if any
    scaffolding: bool = True

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, not {self.level!r}")


@dataclass(frozen=True)
class WorkedExample:
    """An item of the skill, not the learner's exercise, taught through with its gold answer known."""

    question: str
    answer: str
    solution: str = ""


@dataclass(frozen=True)
class RemediationDecision:
    error_type: str
    strategy: str
    intention: str
    parsed: bool = field(default=True, compare=False)  # False: the fallback was used


def clip(text: str, limit: int) -> str:
    """``text`` stripped and cut to ``limit`` characters (an ellipsis marks the cut)."""
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _mastery_line(ctx: LearnerContext) -> str:
    if not ctx.mastery:
        return ""
    shown = ", ".join(f"{name} {round(p * 100)}%" for name, p in ctx.mastery)
    return f"Estimated mastery per skill: {shown}."


def _mistakes_lines(ctx: LearnerContext) -> str:
    if not ctx.mistakes:
        return ""
    shown = "\n".join(
        f"- {clip(m.question, 200)} → they answered: {clip(m.answer, 120) or '(nothing)'}"
        for m in list(ctx.mistakes)[:MAX_MISTAKES_SHOWN]
    )
    return f"Their recent mistakes:\n{shown}"


def _difficulty_line(ctx: LearnerContext) -> str:
    if ctx.difficulty_feedback == "too_hard":
        return "They found your last explanation too hard: go slower and simpler."
    if ctx.difficulty_feedback == "too_easy":
        return "They found your last explanation too easy: go faster and deeper."
    return ""


def context_text(ctx: LearnerContext) -> str:
    """The learner, described for the teacher in a few lines."""
    lines = [
        f"The learner is {LEVELS[ctx.level]}.",
        _mastery_line(ctx),
        _mistakes_lines(ctx),
        _difficulty_line(ctx),
    ]
    return "\n".join(line for line in lines if line)


def context_instructions(ctx: LearnerContext) -> list[str]:
    """The lines of :func:`context_text` that tell the teacher how to write (level, mastery, last
    rating): a reply must not read them back. The learner's mistakes are material, not instructions."""
    lines = [f"The learner is {LEVELS[ctx.level]}.", _mastery_line(ctx), _difficulty_line(ctx)]
    return [line for line in lines if line]


def _conversation(content: str) -> Conversation:
    return [{"role": "system", "content": TUTOR_SYSTEM}, {"role": "user", "content": content}]


def _answer_line(answer: str) -> str:
    return f"Answer: {answer}"


def explanation_prompt(
    skill_name: str,
    skill_description: str,
    ctx: LearnerContext,
    *,
    example: WorkedExample | None = None,
    style: str = "",
) -> Conversation:
    """Explain a skill to this learner before they practise it, through ``example`` (its gold answer
    and solution are given, so the teacher can get it right and the reply can be checked against
    them); ``style`` asks for an alternative."""
    about = f"{skill_name}: {skill_description}" if skill_description.strip() else skill_name
    if example is None:
        content = (
            f"{context_text(ctx)}\n\n{EXPLAIN_SKILL}: {about}\n"
            "Keep it under 120 words. End with one short question that checks they understood."
        )
    else:
        content = (
            f"{context_text(ctx)}\n\n{EXPLAIN_SKILL}: {about}\n\n"
            f"{_example_block(example)}\n\n"
            f'{EXPLAIN_THROUGH_EXAMPLE} "{_answer_line(example.answer)}".'
        )
    if style:
        content += f"\n{style}"
    return _conversation(content)


def explanation_instructions(ctx: LearnerContext, *, style: str = "") -> list[str]:
    """What an explanation must not read back (see the module docstring)."""
    return [TUTOR_SYSTEM, *context_instructions(ctx), EXPLAIN_SKILL, EXPLAIN_THROUGH_EXAMPLE] + (
        [style] if style else []
    )


def _example_block(example: WorkedExample) -> str:
    worked = f"\nIts worked solution: {clip(example.solution, 600)}" if example.solution.strip() else ""
    return (
        f"Worked example: {clip(example.question, MAX_QUESTION_CHARS)}\n"
        f"Its correct answer: {example.answer}{worked}"
    )


def _exercise_block(question: str, learner_answer: str, gold_answer: str, solution: str) -> str:
    worked = f"\nWorked solution: {clip(solution, 600)}" if solution.strip() else ""
    return (
        f"Exercise: {clip(question, MAX_QUESTION_CHARS)}\n"
        f"Learner's answer: {clip(learner_answer, MAX_LEARNER_TEXT_CHARS) or '(nothing)'}\n"
        f"Correct answer: {gold_answer}{worked}"
    )


def decision_prompt(
    question: str,
    learner_answer: str,
    gold_answer: str,
    solution: str,
    ctx: LearnerContext,
    *,
    tries: int = 1,
) -> Conversation:
    """The decision step: classify the mistake and choose how to respond, in three labelled lines."""
    strategies = "\n".join(f"- {key}: {text}" for key, text in STRATEGIES.items())
    errors = "\n".join(f"- {key}: {text}" for key, text in ERROR_TYPES.items())
    scaffold = (
        "\nPrefer guiding_question or hint: the learner should find the answer themselves."
        if ctx.scaffolding and tries < len(SCAFFOLD_LADDER)
        else ""
    )
    content = (
        f"{context_text(ctx)}\n\nThe learner got this exercise wrong (try {tries}).\n"
        f"{_exercise_block(question, learner_answer, gold_answer, solution)}\n\n"
        f"Error types:\n{errors}\nStrategies:\n{strategies}{scaffold}\n\n{DECISION_FORMAT}"
    )
    return _conversation(content)


def _decided(decision: RemediationDecision) -> str:
    return (
        f"You decided: the error is {ERROR_TYPES[decision.error_type]}; your strategy is to "
        f"{STRATEGIES[decision.strategy]}; your intention: {decision.intention}"
    )


def remediation_prompt(
    decision: RemediationDecision,
    question: str,
    learner_answer: str,
    gold_answer: str,
    solution: str,
    ctx: LearnerContext,
    *,
    example: WorkedExample | None = None,
) -> Conversation:
    """The reply to a mistake, following the recorded decision.

    With ``example`` (a worked-example strategy) the teacher solves that similar exercise and ends with
    its answer line; without scaffolding (and no example) it shows the learner's own exercise solved,
    ending with the answer line; with scaffolding it must not state the answer.
    """
    finish = ""
    if example is not None:
        finish = f'\n\n{_example_block(example)}\n{SHOW_EXAMPLE} "{_answer_line(example.answer)}".'
    elif not ctx.scaffolding:
        finish = f'\n{SHOW_SOLUTION} "{_answer_line(gold_answer)}".'
    secret = f"{NO_ANSWER_GIVEN}\n" if ctx.scaffolding else ""
    content = (
        f"{context_text(ctx)}\n\n{_exercise_block(question, learner_answer, gold_answer, solution)}\n\n"
        f"{_decided(decision)}{finish}\n{secret}{WRITE_REPLY}"
    )
    return _conversation(content)


def remediation_instructions(decision: RemediationDecision, ctx: LearnerContext) -> list[str]:
    """What a reply to a mistake must not read back: the decision (error type, strategy, intention),
    every strategy and error description, the format of the decision step, and the instructions."""
    return [
        TUTOR_SYSTEM,
        *context_instructions(ctx),
        _decided(decision),
        decision.intention,
        *STRATEGIES.values(),
        *ERROR_TYPES.values(),
        DECISION_FORMAT,
        NO_ANSWER_GIVEN,
        WRITE_REPLY,
        SHOW_EXAMPLE,
        SHOW_SOLUTION,
    ]


def question_prompt(
    question: str, ctx: LearnerContext, *, skill_name: str = "", exercise: str = ""
) -> Conversation:
    """A free question from the learner, answered in the context of what they are working on."""
    where = ""
    if skill_name:
        where += f"\nThey are practising: {skill_name}."
    if exercise:
        where += f"\nTheir current exercise: {clip(exercise, MAX_QUESTION_CHARS)}"
    secret = f"\n{NO_GIVEAWAY}" if ctx.scaffolding and exercise else ""
    content = (
        f"{context_text(ctx)}{where}\n\nThe learner asks: {clip(question, MAX_QUESTION_CHARS)}\n"
        f"{ANSWER_QUESTION}{secret}"
    )
    return _conversation(content)


def question_instructions(ctx: LearnerContext) -> list[str]:
    """What an answer to a free question must not read back."""
    return [TUTOR_SYSTEM, *context_instructions(ctx), ANSWER_QUESTION, NO_GIVEAWAY]


def grading_prompt(question: str, gold_answer: str, solution: str, learner_answer: str) -> Conversation:
    """Grade a free-text answer against the gold answer: one ``Verdict:`` line."""
    worked = f"\nWorked solution: {clip(solution, 600)}" if solution.strip() else ""
    content = (
        f"Exercise: {clip(question, MAX_QUESTION_CHARS)}\nCorrect answer: {gold_answer}{worked}\n"
        f"Learner's answer: {clip(learner_answer, MAX_LEARNER_TEXT_CHARS) or '(nothing)'}\n\n"
        "Does the learner's answer mean the same as the correct answer? Small spelling slips are "
        "fine. Reply with one line: 'Verdict: correct' or 'Verdict: incorrect'."
    )
    return [
        {"role": "system", "content": "You grade answers strictly and briefly."},
        {"role": "user", "content": content},
    ]


# ---------------------------------------------------------------- parsing


_LABEL_RE = re.compile(
    r"^[\s>*#_`\-\d.)]*(error[ _-]?type|type of error|error|mistake|strategy|remediation|"
    r"intention|intent|goal)\s*[*_`]*\s*[:=\-–]\s*(.*)$",
    re.IGNORECASE,
)
_LABELS = {
    "error type": "error_type",
    "error_type": "error_type",
    "error-type": "error_type",
    "errortype": "error_type",
    "type of error": "error_type",
    "error": "error_type",
    "mistake": "error_type",
    "strategy": "strategy",
    "remediation": "strategy",
    "intention": "intention",
    "intent": "intention",
    "goal": "intention",
}

# Words that point at one choice; a value naming two different choices is ambiguous and unused.
_STRATEGY_WORDS = {
    "guiding_question": ("guiding_question", "guiding question", "question", "socratic"),
    "hint": ("hint", "clue", "nudge"),
    "worked_example": ("worked_example", "worked example", "example", "demonstrat", "model the"),
    "reexplain": ("reexplain", "re-explain", "re explain", "explain again", "concept", "reteach"),
}
_ERROR_WORDS = {
    "slip": ("slip", "careless", "typo", "arithmetic slip"),
    "procedural": ("procedural", "procedure", "step", "carry", "borrow", "algorithm"),
    "conceptual": ("conceptual", "concept", "misconception", "misunderstand"),
    "misread": ("misread", "read the question", "misinterpret"),
    "no_answer": ("no_answer", "no answer", "blank", "gave up", "did not answer"),
    "other": ("other",),
}


def _is_placeholder(value: str) -> bool:
    """The prompt's own template echoed back ("<one strategy key>")."""
    return not value or ("<" in value and ">" in value)


def _choose(value: str, words: dict[str, tuple[str, ...]]) -> str | None:
    """The one key that ``value`` names (exactly, or by its words); None when none or several."""
    text = value.casefold().replace("*", "").strip(" .`'\"")
    if text in words:
        return text
    found = {key for key, needles in words.items() if any(n in text for n in needles)}
    return found.pop() if len(found) == 1 else None


def fallback_decision(
    learner_answer: str, *, scaffolding: bool = True, tries: int = 1
) -> RemediationDecision:
    """The decision used when the teacher's is unusable: escalate with the number of tries."""
    error_type = "no_answer" if not learner_answer.strip() else "other"
    if scaffolding:
        strategy = SCAFFOLD_LADDER[min(max(tries, 1), len(SCAFFOLD_LADDER)) - 1]
    else:
        strategy = "worked_example"
    return RemediationDecision(
        error_type, strategy, "help the learner see which step of their answer went wrong", parsed=False
    )


def parse_decision(
    text: str, learner_answer: str = "", *, scaffolding: bool = True, tries: int = 1
) -> RemediationDecision:
    """Error type, strategy and intention from the teacher's decision text; never raises.

    Labels are matched loosely ("**Strategy**: Hint", "2. strategy - give a hint", "Error: slip"),
    the first usable value of each label wins, and a missing or ambiguous field takes the value of
    :func:`fallback_decision`. ``parsed`` is True only when the teacher chose both an error type
    and a strategy itself.
    """
    values: dict[str, str] = {}
    for line in (text or "").splitlines():
        m = _LABEL_RE.match(line)
        if not m:
            continue
        key = _LABELS.get(re.sub(r"\s+", " ", m.group(1).casefold()))
        value = m.group(2).strip()
        if key and key not in values and not _is_placeholder(value):
            values[key] = value
    fallback = fallback_decision(learner_answer, scaffolding=scaffolding, tries=tries)
    error_type = _choose(values.get("error_type", ""), _ERROR_WORDS) if "error_type" in values else None
    strategy = _choose(values.get("strategy", ""), _STRATEGY_WORDS) if "strategy" in values else None
    intention = clip(values.get("intention", "").strip(" *`\"'"), MAX_INTENTION_CHARS)
    return RemediationDecision(
        error_type=error_type or fallback.error_type,
        strategy=strategy or fallback.strategy,
        intention=intention or fallback.intention,
        parsed=bool(error_type and strategy),
    )


_VERDICT_RE = re.compile(
    r"verdict\s*[*_`]*\s*[:=\-]\s*[*_`\"']*\s*(incorrect|correct|wrong|right)\b", re.IGNORECASE
)
_VERDICT_TEMPLATE = "'Verdict: correct' or 'Verdict: incorrect'"


def parse_verdict(text: str) -> bool | None:
    """True / False from a ``Verdict: correct|incorrect`` line; None when the teacher gave none.

    The last verdict counts (a teacher may think aloud first); the prompt's own template, echoed
    back, is not a verdict.
    """
    found = _VERDICT_RE.findall((text or "").replace(_VERDICT_TEMPLATE, ""))
    if not found:
        return None
    return found[-1].casefold() in ("correct", "right")


_READ_BACK_RE = re.compile(
    r"^[\s>*#_`\-\d.)]*(error[ _-]?type|strategy|intention)\s*[*_`]*\s*[:=]", re.IGNORECASE | re.MULTILINE
)


def reads_back_decision(text: str) -> bool:
    """Whether a reply carries the decision's labelled lines ("Strategy: hint") instead of teaching."""
    return _READ_BACK_RE.search(text or "") is not None


def show_alternatives(rng: random.Random, share: float) -> bool:
    """Whether this explanation is shown as two alternatives to choose from."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must be in [0, 1], not {share!r}")
    return share > 0.0 and rng.random() < share
