"""Browser tests: Playwright driving Debian's Chromium (never a downloaded browser) against a live daphne."""

from __future__ import annotations

import pytest

from tests.e2e.live import CHROMIUM, CHROMIUM_ARGS

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def browser():
    """Per module: Playwright's sync API runs an event loop in this thread while it is open, which
    pytest-asyncio's session loop cannot run beside (async tests after the browser tests failed)."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -r requirements-dev.txt")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium (never `playwright install`)")
    sync_api.expect.set_options(timeout=15_000)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()


def sign_in(page, site, username: str) -> None:
    page.goto(f"{site.url}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{site.url}/")
