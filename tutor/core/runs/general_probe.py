"""A small general probe for forgetting: easy questions outside every course.

Training a small student on one course can make it answer *everything* the course's way (an
adapter trained on additions answered multiplications as additions; STACK-NOTES). The course's own
probe cannot see that happen to what the course does not cover, so every re-examination also asks
these questions, and compares with the base model's answers to them.

Rules that matter:
- multiple choice with three options, the gold option in every position, answered by likelihood,
  cloze style (:func:`~.steps.general_answers`: the bare question, each option as the whole reply):
  a student that has started answering everything as a worked sum still "chooses" an option, and
  no grader has to read rambling text. A student that cannot score (a model behind an HTTP API)
  is not probed;
- split "exam": :func:`~tutor.core.courses.course.training_safe` refuses them anywhere training data is
  built, and the run's exam guard drops teacher text that quotes them;
- deliberately easy: the bundled SmolLM2-135M-Instruct gets 13 of the 16 right this way (chance is
  about 5), so a fall means forgetting, not noise around chance. (Generating its answer to the
  lettered question, the same model got 5 of 12 right: it names the wrong letter for the right word.)
"""

from __future__ import annotations

from tutor.core.courses.course import Exercise

SKILL = "general-probe"

_ITEMS: tuple[tuple[str, tuple[str, str, str], int], ...] = (
    ("Which of these is a fruit?", ("apple", "hammer", "cloud"), 0),
    ("What colour is the sky on a clear day?", ("green", "blue", "red"), 1),
    ('Which animal says "moo"?', ("cat", "duck", "cow"), 2),
    ("What is the capital of France?", ("Paris", "Berlin", "Madrid"), 0),
    ('Which word is the opposite of "hot"?', ("tall", "cold", "fast"), 1),
    ("Which day comes after Monday?", ("Sunday", "Friday", "Tuesday"), 2),
    ("What do bees make?", ("honey", "milk", "glass"), 0),
    ("Which of these can fly?", ("fish", "bird", "snail"), 1),
    ("What is frozen water called?", ("steam", "sand", "ice"), 2),
    ("Which planet do we live on?", ("Earth", "Mars", "Venus"), 0),
    ("What do people use to write on paper?", ("spoon", "pencil", "shoe"), 1),
    ("Which of these is a colour?", ("table", "river", "yellow"), 2),
    ("Which word is a greeting?", ("hello", "under", "quickly"), 0),
    ("Which season comes after winter?", ("autumn", "spring", "summer"), 1),
    ("Where do fish live?", ("in trees", "in the desert", "in water"), 2),
    ("Which of these is a vegetable?", ("carrot", "stone", "clock"), 0),
)

GENERAL_PROBE: tuple[Exercise, ...] = tuple(
    Exercise(
        key=f"{SKILL}-{i:02d}",
        skill=SKILL,
        prompt=prompt,
        answer=options[gold],
        answer_type="choice",
        options=options,
        split="exam",
    )
    for i, (prompt, options, gold) in enumerate(_ITEMS)
)


def general_items(n: int) -> tuple[Exercise, ...]:
    """The first ``n`` items of the general probe (all of them when ``n`` is larger)."""
    return GENERAL_PROBE[: max(n, 0)]
