"""Using what was trained, from the browser, as a staff member would: train a tiny adapter, evaluate
it against the base, see the comparison, try both in the playground, merge it and download the
merged model. The student is the tiny test model (random weights: what it answers is noise, so the
test checks that each page does its work, not what the model learned)."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest

from tests.e2e.conftest import sign_in
from tests.e2e.live import LiveSite

pytestmark = pytest.mark.e2e
expect = pytest.importorskip("playwright.sync_api").expect

RECORDS = [
    {
        "messages": [
            {"role": "user", "content": f"What is {a} + 1?"},
            {"role": "assistant", "content": f"Answer: {a + 1}"},
        ]
    }
    for a in range(8)
]


@pytest.fixture(scope="module")
def site(tmp_path_factory, tiny_model_dir):
    live = LiveSite(tmp_path_factory.mktemp("live-adapters"), worker=True).setup(
        "--teacher-url", "http://127.0.0.1:9/v1", "--tiny-student", str(tiny_model_dir)
    )
    yield live
    live.stop()


def test_a_staff_member_trains_evaluates_tries_and_ships_an_adapter(page, site, tmp_path):
    sign_in(page, site, "ivan")

    # Train: upload a dataset, fine-tune the tiny student for two steps.
    data = tmp_path / "sums.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in RECORDS))
    page.goto(f"{site.url}/training/datasets/upload/")
    page.fill("input[name=name]", "sums")
    page.set_input_files("input[name=file]", str(data))
    page.locator("main button[type=submit]").click()
    page.goto(f"{site.url}/training/fine-tune/")
    for select, text in (("base_model", "tiny"), ("dataset", "sums")):
        option = page.locator(f"select[name={select}] option", has_text=text).first
        page.select_option(f"select[name={select}]", value=option.get_attribute("value"))
    page.fill("input[name=max_steps]", "2")
    page.fill("input[name=batch_size]", "4")
    page.locator("button", has_text="Start training").click()
    page.wait_for_url(re.compile(r"/training/jobs/\d+/$"))
    expect(page.locator(".job-state .status")).to_have_text("Succeeded", timeout=180_000)

    # Evaluate it against the base, from the job's page: the form comes with the adapter ticked.
    page.locator("a", has_text="evaluate it against the base").click()
    expect(page.locator("input[name=adapters]:checked")).to_have_count(1)
    page.select_option("select[name=course]", label="Mini arithmetic")
    page.check("input[name=split][value=exam]")
    page.locator("form.stack button[type=submit]").click()
    page.wait_for_url(re.compile(r"/evaluations/\d+/$"))
    state = page.locator("#evaluation-state")
    expect(state).to_contain_text("Succeeded", timeout=180_000)  # over the socket, no reload
    table = state.locator("table.eval-table")
    expect(table.locator("thead th")).to_have_text(["Skill", "Items", "base", re.compile(r"^v1 \(#\d+\)$")])
    expect(table.locator("tbody tr")).to_have_count(4)  # three skills of the mini course, then all items
    expect(state.locator(".eval-chart .eval-bar-row")).to_have_count(8)

    # Try both in the playground.
    page.goto(f"{site.url}/training/models/")
    page.locator("a", has_text="Playground").first.click()
    page.locator("input[name=adapter]").first.check()
    page.fill("textarea[name=prompt]", "What is 2 + 2?")
    page.locator("button", has_text="Generate").click()
    expect(page.get_by_text("Done.", exact=True)).to_have_count(3, timeout=60_000)  # 2 columns, then all

    # Merge and download.
    page.goto(f"{site.url}/training/adapters/")
    page.locator(".adapter-merge button", has_text="Merge").first.click()
    link = page.locator("a", has_text="Download merged model")
    expect(link).to_be_visible(timeout=120_000)
    with page.expect_download() as download:
        link.click()
    archive = zipfile.ZipFile(io.BytesIO(download.value.path().read_bytes()))
    assert any(name.endswith("config.json") for name in archive.namelist())
    assert any(name.endswith(".safetensors") for name in archive.namelist())
    assert not page.js_errors
