"""The learner's path with the real bundled SmolLM2-135M-Instruct as the teacher (slow), on the arithmetic
pack: whatever the small model writes, a learner sees only a reply that passed its checks, or the
course's own text labelled as such; never its echoed instructions or a wrong answer (issue 15)."""

from __future__ import annotations

import os
import re

import pytest

from tests.e2e.conftest import sign_in
from tests.e2e.live import LiveSite
from tutor.core.courses.checks import echoed, repeated, unfinished
from tutor.core.courses.course import Exercise
from tutor.core.courses.expert import PACK_EXPERTS
from tutor.core.courses.grading import grade
from tutor.core.learn import prompts
from tutor.core.learn.prompts import ERROR_TYPES, STRATEGIES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect

# Everything the teacher is told about how to write, for any level: none of it may reach the page.
INSTRUCTIONS = [
    prompts.TUTOR_SYSTEM,
    *(f"The learner is {text}." for text in prompts.LEVELS.values()),
    prompts.EXPLAIN_SKILL,
    prompts.EXPLAIN_THROUGH_EXAMPLE,
    prompts.ALTERNATIVE_STYLE,
    prompts.DECISION_FORMAT,
    prompts.NO_ANSWER_GIVEN,
    prompts.WRITE_REPLY,
    *STRATEGIES.values(),
    *ERROR_TYPES.values(),
]


IVAN_INSTRUCTS_ARITHMETIC = (
    "from django.contrib.auth.models import User; from tutor.models import Course; "
    "Course.objects.get(key='arithmetic').instructors.add(User.objects.get(username='ivan'))"
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # The converted copy of the bundled model that the other slow tests share (CI keeps it across runs).
    cache = os.environ.get("TEACHLOOP_TEST_MODEL_CACHE") or str(tmp_path_factory.mktemp("model-cache"))
    live = LiveSite(tmp_path_factory.mktemp("live-real"), TEACHLOOP_MODEL_CACHE_DIR=cache)
    live.run("-m", "tests.e2e.seed", "--bundled", "--max-new-tokens", "32")  # modest: 2 slow cores
    live.run("manage.py", "import_course", "--pack", "arithmetic")
    live.run("manage.py", "shell", "-c", IVAN_INSTRUCTS_ARITHMETIC)
    live.start()
    yield live
    live.stop()


def solved(question: str) -> str:
    """The arithmetic pack's own answer to a question in any of its phrasings."""
    answer = PACK_EXPERTS["arithmetic"].answer(Exercise("q", "s", question, "0", "number"))
    assert answer is not None, f"the pack cannot read {question!r}"
    return answer


def test_it_shows_a_new_learner_only_a_checked_first_explanation(page, site):
    sign_in(page, site, "lena")
    page.goto(f"{site.url}/learn/")
    page.locator('[data-course="arithmetic"] button', has_text="Start learning").click()
    page.wait_for_url(re.compile(r"/learn/sessions/\d+/$"))
    exercise = page.locator("#exercise-prompt").inner_text().strip()
    explanation = page.locator('#tutor-messages article[data-kind="explanation"]').last
    expect(explanation).to_have_attribute("data-status", "done", timeout=180_000)  # first load converts/loads
    text = explanation.locator(".output").inner_text().strip()
    if explanation.get_attribute("data-source") == "model":  # it passed: it states the example's answer
        example = explanation.locator(".tmsg-example").inner_text().removeprefix("Worked example:").strip()
        assert grade({"answer": solved(example), "answer_type": "number"}, text).correct, text
        assert not unfinished(text) and repeated(text) is None, text  # shown whole, not looping
    else:  # it failed: the course's worked example, labelled as the course's
        assert explanation.get_attribute("data-source") == "expert"
        expect(explanation.locator("header")).to_contain_text("Worked example from the course")
        example = text.splitlines()[0].removeprefix("Example:").strip()
        assert text.endswith(f"Answer: {solved(example)}")
    assert example != exercise  # taught through another item: the learner's answer is not given away
    assert echoed(text, INSTRUCTIONS) is None, text
    assert "The learner is" not in page.locator("#tutor-messages").inner_text()

    page.fill("#answer-input", "1000")  # wrong for every first item of the pack
    page.click("#answer-form button[type=submit]")
    expect(page.locator("#result")).to_have_attribute("data-correct", "false")
    reply = page.locator('#tutor-messages article[data-kind="remediation"]').last
    expect(reply).to_have_attribute("data-status", "done", timeout=120_000)
    said = reply.locator(".output").inner_text().strip()
    assert said and echoed(said, INSTRUCTIONS) is None, said
    assert not prompts.reads_back_decision(said), said
    assert reply.get_attribute("data-source") in ("model", "expert", "note")
    if reply.get_attribute("data-source") == "model":  # scaffolding: a hint never states the answer
        assert not grade({"answer": solved(exercise), "answer_type": "number"}, said).correct, said

    instructor = page.context.browser.new_context().new_page()
    sign_in(instructor, site, "ivan")
    instructor.goto(f"{site.url}/learn/courses/arithmetic/learners/")
    cells = instructor.locator("#decisions tbody tr").first.locator("td")
    assert cells.nth(3).inner_text() in ERROR_TYPES  # a recorded decision (the model's or the fallback)
    assert cells.nth(4).inner_text().split()[0] in STRATEGIES
    if explanation.get_attribute("data-source") == "expert":  # why the model's text was not shown
        expect(instructor.locator("#failed-checks tbody tr", has_text="explanation").first).to_be_visible()
    instructor.context.close()
