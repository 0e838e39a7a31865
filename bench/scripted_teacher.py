"""A deterministic "scripted teacher" for the teaching benchmark; bench only, never product code.

It stands in for a strong teacher (say a 70B model behind vLLM) that a 2-core CPU box cannot run.
It speaks the :class:`~training.core.llm.base.LLM` interface and answers the three kinds of prompt
a teaching run sends (see ``tutor/core/runs/prompts.py``):

- an **explanation** prompt ("A student answered this question wrongly ..."): a ``Mistake:``
  sentence about the student's actual answer (what number it gave, how far off, no final line),
  the gold worked solution of the item (``Solution: ...``) and ``Answer: <gold>``;
- a **generation** prompt ("Write k new exercises of the same kind ..."): ``k`` new items of the
  source item's skill and level, made by the course packs' own generators in training phrasings
  other than the source's (so the expert can verify them), each with the packs' worked solution,
  separated by ``---``;
- any other prompt (a plain question, the exam, the second answer that verifies a generated item):
  the gold answer as ``Answer: ...``.

What it knows: the course's gold answers and worked solutions, looked up by question text, and the
packs' solver for questions not in the course. It is therefore an *oracle* teacher: it never
fails the verification gate on a pack item. Results obtained with it measure what the loop does
with good teacher material, not how good any real teacher model is; the benchmark report says so.

BIG-bench ``valid_parentheses`` items are answered with a stack check, explained with the first
unmatched bracket, and new sequences are generated for them. Other items without a worked solution
(for example ``elementary_math_qa``) get "The correct answer is X" and no generated items.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter
from collections.abc import Iterator, Sequence

from training.core.llm.base import LLM, Conversation, Generation, GenerationParams, ModelSpec
from tutor.core.courses.course import Course, Exercise
from tutor.core.courses.grading import extract_answer
from tutor.core.courses.packs import FAMILIES, UnsolvableError, make_item, solve
from tutor.core.courses.phrasings import phrasings_for
from tutor.core.runs.prompts import ANSWER_LINE, question_text

PAIRS = {")": "(", "]": "[", "}": "{"}
SEQUENCE_RE = re.compile(r"Sequence:\s*([\s()\[\]{}]+?)\s*(?:\n|$)")


def kind_of(conversation: Conversation) -> str:
    """Which teaching prompt this is: "explain", "generate", or "answer" (anything else)."""
    content = conversation[-1]["content"]
    if "answered this question wrongly" in content:
        return "explain"
    if "new exercises of the same kind" in content:
        return "generate"
    return "answer"


def question_in(conversation: Conversation) -> str:
    """The question text (with lettered options, as :func:`question_text` writes it) in a prompt."""
    content = conversation[-1]["content"]
    kind = kind_of(conversation)
    if kind == "explain":
        return content.split("Question: ", 1)[1].split("\nStudent's answer:", 1)[0].strip()
    if kind == "generate":
        return content.split("Question: ", 1)[1].split("\nSolution:", 1)[0].strip()
    content = content.split("Now answer this question.\n", 1)[-1]
    return content.removesuffix(ANSWER_LINE).strip()


def check_brackets(sequence: str) -> tuple[bool, str]:
    """(balanced?, a one-line reason) for a bracket sequence, by the stack method."""
    stack: list[str] = []
    for position, symbol in enumerate(sequence.split(), start=1):
        if symbol in "([{":
            stack.append(symbol)
        elif symbol in PAIRS:
            if not stack:
                return False, f"bracket {position} '{symbol}' closes nothing (the stack is empty)."
            if stack[-1] != PAIRS[symbol]:
                return False, f"bracket {position} '{symbol}' tries to close '{stack[-1]}'."
            stack.pop()
    if stack:
        return False, f"{len(stack)} bracket(s) are never closed (last open: '{stack[-1]}')."
    return True, "every closing bracket matches the last open one and nothing is left open."


def _random_brackets(rng: random.Random, length: int, valid: bool) -> str:
    symbols: list[str] = []
    stack: list[str] = []
    opening = "([{"
    while len(symbols) < length:
        left = length - len(symbols)
        if stack and (left <= len(stack) or rng.random() < 0.5):
            symbols.append({v: k for k, v in PAIRS.items()}[stack.pop()])
        else:
            symbol = rng.choice(opening)
            stack.append(symbol)
            symbols.append(symbol)
    if not valid:
        i = rng.randrange(len(symbols))
        symbols[i] = rng.choice([s for s in "()[]{}" if s != symbols[i]])
    return " ".join(symbols)


class ScriptedTeacher(LLM):
    """An oracle teacher over ``course``; see the module docstring. Deterministic for a ``seed``."""

    def __init__(self, course: Course, *, seed: int = 0, name: str = "scripted-teacher") -> None:
        super().__init__(ModelSpec(name=name, backend="transformers", source="bench/scripted_teacher.py"))
        self.course = course
        self.seed = seed
        self.by_question: dict[str, Exercise] = {question_text(e): e for e in course.exercises}
        self.known_prompts = {" ".join(e.prompt.casefold().split()) for e in course.exercises}
        self.asked: Counter[str] = Counter()  # generation prompts per source, so later rounds get new items
        self.calls: Counter[str] = Counter()  # conversations answered per kind (reported by the bench)

    # -- the LLM interface ------------------------------------------------------------------------

    def generate(
        self,
        conversations: Sequence[Conversation],
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> list[Generation]:
        out = []
        for conversation in conversations:
            kind = kind_of(conversation)
            self.calls[kind] += 1
            question = question_in(conversation)
            if kind == "explain":
                text = self.explain(question, conversation[-1]["content"])
            elif kind == "generate":
                k = int(re.search(r"Write (\d+) new exercises", conversation[-1]["content"]).group(1))
                text = self.new_items(question, k)
            else:
                text = f"Answer: {self.answer(question)}"
            out.append(Generation(text=text, prompt_tokens=0, completion_tokens=len(text.split())))
        return out

    def stream(
        self,
        conversation: Conversation,
        params: GenerationParams | None = None,
        *,
        adapter: str | None = None,
    ) -> Iterator[str]:
        yield self.generate([conversation], params)[0].text

    # -- what it says -----------------------------------------------------------------------------

    def answer(self, question: str) -> str:
        item = self.by_question.get(question)
        if item is not None:
            return item.answer
        sequence = SEQUENCE_RE.search(question)
        if sequence:
            return "Valid" if check_brackets(sequence.group(1))[0] else "Invalid"
        try:
            return solve(question.split("\n", 1)[0])
        except UnsolvableError:
            return "unknown"

    def solution(self, question: str) -> str:
        """Worked steps ending with the ``Answer:`` line (no ``Solution:`` marker)."""
        item = self.by_question.get(question)
        if item is not None and item.solution.strip():
            return item.solution.strip()
        sequence = SEQUENCE_RE.search(question)
        if sequence:
            valid, reason = check_brackets(sequence.group(1))
            verdict = "Valid" if valid else "Invalid"
            return f"Scan left to right with a stack: {reason}\nAnswer: {verdict}"
        answer = self.answer(question)
        return f"The correct answer is {answer}.\nAnswer: {answer}"

    def explain(self, question: str, prompt: str) -> str:
        item = self.by_question.get(question)
        said = prompt.split("Student's answer: ", 1)[1].split("\n\n", 1)[0].strip()
        gold = self.answer(question)
        return f"Mistake: {self._mistake(item, said, gold)}\nSolution: {self.solution(question)}"

    def _mistake(self, item: Exercise | None, said: str, gold: str) -> str:
        if item is not None and item.answer_type == "number":
            got = extract_answer(said, "number")
            if got is None:
                return "You did not end with a number, so there is no answer to check."
            try:
                diff = abs(float(got) - float(gold))
            except ValueError:
                diff = -1.0
            if diff > 0 and diff in (10, 100, 1000, 1, 2):
                return f"You wrote {got}, off by {diff:g}: a carry or borrow was dropped or added."
            return f"You wrote {got} instead of {gold}; work it column by column instead of guessing."
        if item is not None and item.answer_type == "choice":
            return f"You chose '{extract_answer(said, 'choice', item.options) or said[:40]}', not '{gold}'."
        return f"Your answer '{said[:60]}' is not {gold}."

    def new_items(self, question: str, k: int) -> str:
        source = self.by_question.get(question)
        self.asked[question] += 1
        digest = hashlib.sha256(f"{self.seed}|{question}|{self.asked[question]}".encode()).hexdigest()
        rng = random.Random(int(digest[:16], 16))
        blocks: list[str] = []
        made: set[str] = set()
        family = FAMILIES.get(source.skill) if source is not None else None
        sequence = SEQUENCE_RE.search(question)
        for _ in range(50 * max(k, 1)):
            if len(blocks) == k:
                break
            if family is not None and source is not None:
                # Like a good teacher asked to vary the wording: another training phrasing each time.
                phrasings = [p for p in phrasings_for(family.op, held_out=False) if p.key != source.phrasing]
                level = min(source.difficulty, family.levels)
                prompt, answer, _, solution, _ = make_item(family, rng, level, rng.choice(phrasings))
                steps = solution.rsplit("\nAnswer:", 1)[0]
                block = f"Question: {prompt}\nSolution: {steps}\nAnswer: {answer}"
            elif sequence is not None and source is not None:
                length = len(sequence.group(1).split())
                seq = _random_brackets(rng, max(2, length + rng.choice((-2, 0, 2))), rng.random() < 0.5)
                prefix = source.prompt.rsplit("Sequence:", 1)[0]
                prompt = f"{prefix}Sequence: {seq}"
                valid, reason = check_brackets(seq)
                verdict = "Valid" if valid else "Invalid"
                block = (
                    f"Question: {prompt}\nOptions: Valid | Invalid\n"
                    f"Solution: Scan left to right with a stack: {reason}\nAnswer: {verdict}"
                )
            else:
                return "I cannot write new exercises of this kind."
            identity = " ".join(prompt.casefold().split())
            if identity in self.known_prompts or identity in made:
                continue  # never hand back a course item (the exam included) or a repeat
            made.add(identity)
            blocks.append(block)
        return "\n---\n".join(blocks)
