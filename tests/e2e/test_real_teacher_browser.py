"""The same browser path with the real bundled SmolLM2-135M-Instruct as the teacher (slow)."""

from __future__ import annotations

import os
import re

import pytest

from tests.e2e.conftest import sign_in
from tests.e2e.live import LiveSite
from tutor.core.learn.prompts import ERROR_TYPES, STRATEGIES

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    # The converted copy of the bundled model that the other slow tests share (CI keeps it across runs).
    cache = os.environ.get("TEACHLOOP_TEST_MODEL_CACHE") or str(tmp_path_factory.mktemp("model-cache"))
    live = LiveSite(tmp_path_factory.mktemp("live-real"), TEACHLOOP_MODEL_CACHE_DIR=cache)
    live.setup("--bundled", "--max-new-tokens", "32")
    yield live
    live.stop()


def test_it_tutors_with_the_real_bundled_model(page, site):
    sign_in(page, site, "lena")
    page.goto(f"{site.url}/learn/")
    page.locator('[data-course="tiny"] button', has_text="Start learning").click()
    page.wait_for_url(re.compile(r"/learn/sessions/\d+/$"))
    explanation = page.locator('#tutor-messages article[data-kind="explanation"]').last
    expect(explanation).to_have_attribute("data-status", "done", timeout=180_000)  # first load converts/loads
    assert explanation.locator(".output").inner_text().strip()

    page.fill("#answer-input", "6")
    page.click("#answer-form button[type=submit]")
    expect(page.locator("#result")).to_have_attribute("data-correct", "false")
    reply = page.locator('#tutor-messages article[data-kind="remediation"]').last
    expect(reply).to_have_attribute("data-status", "done", timeout=120_000)
    assert reply.locator(".output").inner_text().strip()

    instructor = page.context.browser.new_context().new_page()
    sign_in(instructor, site, "ivan")
    instructor.goto(f"{site.url}/learn/courses/tiny/learners/")
    cells = instructor.locator("#decisions tbody tr").first.locator("td")
    assert cells.nth(3).inner_text() in ERROR_TYPES  # a recorded decision (the model's or the fallback)
    assert cells.nth(4).inner_text().split()[0] in STRATEGIES
    instructor.context.close()
