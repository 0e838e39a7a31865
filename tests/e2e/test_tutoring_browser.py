"""A learner in a real browser: sign in, watch the tutor write, answer, see mastery move, rate, stay safe.

The teacher is the fake OpenAI-compatible server (in this process), streaming word by word; it
echoes the prompt (so its replies fail their checks and the course's text is shown instead), except
where :func:`scripted_reply` gives the decision step a real answer, a free question a plain reply,
and, when a test asks for it (``SCRIPT``), an explanation a right one.
"""

from __future__ import annotations

import re

import pytest

from tests import fake_openai_server
from tests.e2e.conftest import sign_in
from tests.e2e.live import LiveSite
from tests.fake_openai_server import FakeOpenAIServer

pytestmark = pytest.mark.e2e
expect = pytest.importorskip("playwright.sync_api").expect

echo_reply = fake_openai_server.fake_reply


SCRIPT = {"explanation": "echo"}  # "right": explanations solve the worked example (4 + 4) correctly


def scripted_reply(messages, max_tokens, stop):
    """The decision step gets a well-formed decision, a free question a reply quoting it, an explanation
    the echo or (``SCRIPT``) a right one; everything else the echo."""
    last = next((m.get("content", "") for m in reversed(messages) if m.get("role") == "user"), "")
    if "Decide before you teach" in last:
        return "Error type: slip\nStrategy: guiding_question\nIntention: notice that 2 + 3 is not 6", "stop"
    asked = re.search(r"^The learner asks: (.*)$", last, re.MULTILINE)
    if asked:
        return f"You asked: {asked.group(1)} Look at the ones first.", "stop"
    if "Explain this skill" in last and SCRIPT["explanation"] == "right":
        return "Add the ones: 4 + 4 = 8.\nAnswer: 8", "stop"
    return echo_reply(messages, max_tokens, stop)


@pytest.fixture
def right_explanations():
    SCRIPT["explanation"] = "right"
    yield
    SCRIPT["explanation"] = "echo"


@pytest.fixture(scope="module")
def teacher():
    patch = pytest.MonkeyPatch()
    patch.setattr(fake_openai_server, "fake_reply", scripted_reply)
    with FakeOpenAIServer(models={"fake-model"}, chunk_delay_s=0.03) as server:
        yield server
    patch.undo()


@pytest.fixture(scope="module")
def site(tmp_path_factory, teacher):
    live = LiveSite(tmp_path_factory.mktemp("live-site")).setup(
        "--teacher-url", teacher.base_url, "--max-new-tokens", "400"
    )
    yield live
    live.stop()


def open_session(page, site, username: str) -> None:
    sign_in(page, site, username)
    page.goto(f"{site.url}/learn/")
    page.locator('[data-course="tiny"] button', has_text="Start learning").click()
    page.wait_for_url(re.compile(r"/learn/sessions/\d+/$"))
    expect(page.locator("#tutor-connection")).to_have_attribute("data-state", "open")


def last_message(page, kind: str):
    return page.locator(f'#tutor-messages article[data-kind="{kind}"]').last


def bar(page, skill: str):
    return page.locator(f'#mastery-chart .mbar[data-skill="{skill}"]')


def test_it_shows_the_tutor_writing_then_the_course_example_in_place_of_an_echo(page, site):
    open_session(page, site, "lena")
    explanation = last_message(page, "explanation")
    # While the reply is written the page shows how much, never what: status, count and text are read in
    # one evaluation in the page (by selector each time: the article is swapped out when it changes).
    written = page.wait_for_function(
        """() => {
            const all = document.querySelectorAll('#tutor-messages article[data-kind="explanation"]');
            const el = all[all.length - 1];
            const count = el && el.querySelector('.tmsg-status[data-chars]');
            return el && el.dataset.status === 'streaming' && count && Number(count.dataset.chars) > 0
                && { chars: Number(count.dataset.chars), text: el.querySelector('.output').innerText };
        }"""
    ).json_value()
    assert written["chars"] > 0 and written["text"] == ""
    expect(explanation).to_have_attribute("data-status", "done")
    # The fake teacher echoed its prompt: the learner gets the course's worked example, labelled.
    expect(explanation).to_have_attribute("data-source", "expert")
    expect(explanation.locator("header")).to_contain_text("Worked example from the course")
    expect(explanation.locator(".output")).to_have_text("Example: What is 4 + 4?\n4 + 4 = 8.\nAnswer: 8")
    expect(page.locator("#tutor-messages")).not_to_contain_text("The learner is a beginner")
    assert page.js_errors == []


def test_it_shows_an_explanation_that_passed_its_checks_as_the_tutors(page, site, right_explanations):
    open_session(page, site, "lucy")
    explanation = last_message(page, "explanation")
    expect(explanation).to_have_attribute("data-status", "done")
    expect(explanation).to_have_attribute("data-source", "model")
    expect(explanation.locator(".tmsg-example")).to_contain_text("What is 4 + 4?")
    expect(explanation.locator(".output")).to_have_text("Add the ones: 4 + 4 = 8.\nAnswer: 8")
    expect(explanation.locator("header")).not_to_contain_text("from the course")
    # The model's own checked reply is the one to rate; a rating survives a reload.
    explanation.get_by_role("button", name="👍 Helpful").click()
    expect(explanation.locator(".saved")).to_have_text("Thanks, saved.")
    explanation.get_by_role("button", name="Too hard").click()
    # saved (the answer swaps in the pressed button) before the reload: else the reload can win the race
    expect(explanation.get_by_role("button", name="Too hard")).to_have_attribute("aria-pressed", "true")
    page.reload()
    explanation = last_message(page, "explanation")
    expect(explanation.get_by_role("button", name="👍 Helpful")).to_have_attribute("aria-pressed", "true")
    expect(explanation.get_by_role("button", name="Too hard")).to_have_attribute("aria-pressed", "true")


def test_it_grades_answers_and_moves_the_mastery_chart(page, site):
    open_session(page, site, "liam")
    expect(bar(page, "add")).to_have_attribute("data-percent", "20")
    page.fill("#answer-input", "6")
    page.click("#answer-form button[type=submit]")
    expect(page.locator("#result")).to_have_attribute("data-correct", "false")
    expect(page.locator("#answer-input")).to_have_value("6")  # kept for fixing
    expect(bar(page, "add")).to_have_attribute("data-percent", "18")
    reply = last_message(page, "remediation")
    expect(reply).to_have_attribute("data-status", "done")
    # The fake teacher read its decision back: never shown. The first step of 2 + 3 would give the sum
    # away, so the course's hint is a similar item, solved.
    expect(reply.locator("header")).to_contain_text("Worked example from the course")
    expect(reply.locator(".output")).not_to_contain_text("guiding question")
    expect(reply.locator(".output")).to_contain_text("4 + 4 = 8")

    page.fill("#answer-input", "5")
    page.click("#answer-form button[type=submit]")
    expect(page.locator("#result")).to_have_attribute("data-correct", "true")
    expect(bar(page, "add")).to_have_attribute("data-percent", "57")  # BKT: 0.176 → 0.566
    assert bar(page, "add").locator(".mbar-fill").evaluate("el => el.style.width") == "57%"


def test_it_shows_a_model_reply_with_script_as_plain_text(page, site):
    open_session(page, site, "leo")
    expect(last_message(page, "explanation")).to_have_attribute("data-status", "done")
    page.fill("#question-input", "<script>window.pwned = 1</script><b id='bold'>why</b>?")
    page.click("#question-form button[type=submit]")
    expect(page.locator("#question-input")).to_have_value("")
    answer = last_message(page, "answer")
    expect(answer).to_have_attribute("data-status", "done")
    expect(answer.locator(".output")).to_contain_text(
        "<script>window.pwned = 1</script><b id='bold'>why</b>?"
    )
    expect(answer.locator(".learner-question")).to_contain_text("<script>")
    assert page.evaluate("typeof window.pwned") == "undefined"
    assert page.locator("#bold").count() == 0
    assert page.js_errors == []


def test_it_offers_a_retry_when_the_teacher_fails_and_keeps_the_question(page, site, teacher):
    open_session(page, site, "lara")
    expect(last_message(page, "explanation")).to_have_attribute("data-status", "done")
    teacher.fail_next(503, times=2)  # the first try and the one retry a page makes (TEACHLOOP_PAGE_RETRIES)
    page.fill("#question-input", "Why do we carry the 1?")
    page.click("#question-form button[type=submit]")
    answer = last_message(page, "answer")
    expect(answer).to_have_attribute("data-status", "failed")
    expect(answer).to_contain_text("The tutor could not answer just now")
    expect(answer.locator(".learner-question")).to_contain_text("Why do we carry the 1?")
    answer.get_by_role("button", name="Try again").click()
    expect(answer).to_have_attribute("data-status", "done")
    expect(answer.locator(".output")).to_contain_text("Why do we carry the 1?")


def test_it_shows_instructors_the_decisions_on_mistakes(page, site, browser):
    open_session(page, site, "lily")
    page.fill("#answer-input", "6")
    page.click("#answer-form button[type=submit]")
    expect(last_message(page, "remediation")).to_have_attribute("data-status", "done")
    instructor = browser.new_context().new_page()
    sign_in(instructor, site, "ivan")
    instructor.goto(f"{site.url}/learn/courses/tiny/learners/")
    row = instructor.locator("#decisions tbody tr", has_text="lily")
    expect(row).to_contain_text("slip")
    expect(row).to_contain_text("guiding_question")
    expect(row).to_contain_text("notice that 2 + 3 is not 6")
    # The reply that echoed its prompt: why it failed and what the model wrote, for instructors only.
    failed = instructor.locator("#failed-checks tbody tr", has_text="lily")
    failed = failed.filter(has_text="reply to a mistake")
    expect(failed).to_contain_text("repeats its instructions")
    expect(failed.locator(".failed-text")).to_contain_text("You said: The learner is a beginner")
    expect(page.locator("#tutor-messages")).not_to_contain_text("repeats its instructions")
    instructor.context.close()


def test_it_reconnects_by_itself_after_the_server_restarts(page, site):
    open_session(page, site, "luke")
    expect(last_message(page, "explanation")).to_have_attribute("data-status", "done")
    site.stop()
    expect(page.locator("#tutor-connection")).to_have_attribute("data-state", "closed")
    site.start()
    expect(page.locator("#tutor-connection")).to_have_attribute("data-state", "open")
    expect(last_message(page, "explanation")).to_have_attribute(
        "data-status", "done"
    )  # state from the database
    page.fill("#question-input", "Still there?")
    page.click("#question-form button[type=submit]")
    expect(last_message(page, "answer")).to_have_attribute("data-status", "done")
