"""A teaching run from the browser: start it from the form, watch its page update over the WebSocket
until it is done, without reloading. The student is the tiny test model, the teacher the fake
OpenAI-compatible server (it echoes, so its explanations fail the answer check: nothing trains)."""

from __future__ import annotations

import re

import pytest

from tests.e2e.conftest import sign_in
from tests.e2e.live import LiveSite
from tests.fake_openai_server import FakeOpenAIServer

pytestmark = pytest.mark.e2e
expect = pytest.importorskip("playwright.sync_api").expect


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_dir):
    with FakeOpenAIServer(models={"fake-model"}) as teacher:
        live = LiveSite(tmp_path_factory.mktemp("live-runs"), worker=True).setup(
            "--teacher-url", teacher.base_url, "--max-new-tokens", "24", "--tiny-student", str(tiny_model_dir)
        )
        yield live
        live.stop()


def test_it_starts_a_run_and_watches_it_finish_live(page, site):
    sign_in(page, site, "ivan")
    page.goto(f"{site.url}/runs/new/")
    page.select_option("select[name=course]", label="Mini arithmetic")
    page.select_option("select[name=student]", label="tiny")
    page.select_option("select[name=teacher]", label="fake-teacher")
    page.fill("input[name=rounds]", "1")
    page.fill("input[name=plan_budget]", "3")
    page.fill("input[name=explain_budget]", "2")
    page.fill("input[name=generate_budget]", "0")
    page.uncheck("input[name=train]")
    page.click("form.card button[type=submit]")
    page.wait_for_url(re.compile(r"/runs/\d+/$"))
    run_id = page.url.rstrip("/").rsplit("/", 1)[-1]

    # Opened while queued or running: everything after arrives over the socket, never by a reload.
    page.evaluate("window.__notReloaded = true")
    state = page.locator(f"#run-state-{run_id}")
    expect(state.locator(".status")).to_have_text("Succeeded", timeout=120_000)
    assert page.evaluate("window.__notReloaded") is True
    expect(state.locator(".step-done")).to_have_count(8)  # the whole round's timeline
    expect(state.locator("table.results tbody tr")).to_have_count(3)  # one row per skill of the mini course
    expect(state).to_contain_text("dropped by the checks")
    expect(state).to_contain_text("General probe (16 questions outside the course)")
    # The charts drew from the data the last fragment carried.
    expect(page.locator("#mastery-chart canvas")).to_have_count(1)
    expect(page.locator("#exam-chart canvas")).to_have_count(1)
    assert not page.js_errors
