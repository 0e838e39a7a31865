"""manage.py evaluate: a student and its adapters, skill by skill, with the noise marked."""

from __future__ import annotations

import io
import json

import pytest
from django.core.management import CommandError, call_command

from tests.tutor.core.runs.fakes import student_reply
from tests.tutor.runs.helpers import make_models_and_course, scripted_models
from training.models import Adapter, LanguageModel

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(monkeypatch, tmp_path):
    fakes = scripted_models(monkeypatch)
    # The base gets everything wrong; any adapter gets everything right.
    fakes["scripted-student"].reply = student_reply(knows=lambda question, adapter: adapter is not None)
    _, _, student, _ = make_models_and_course()
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    adapter = Adapter.objects.create(base_model=student, version=1, path=str(folder), method="sft")
    return fakes["scripted-student"], student, adapter


def evaluate(*args: str) -> str:
    out = io.StringIO()
    call_command(
        "evaluate",
        "--course",
        "mini",
        "--student",
        "scripted-student",
        *args,
        stdout=out,
        stderr=io.StringIO(),
    )
    return out.getvalue()


def test_it_prints_base_and_adapter_per_skill_and_marks_a_gain_beyond_noise(setup):
    llm, _, adapter = setup
    output = evaluate("--adapter", str(adapter.pk))
    rows = {line.split()[0]: line for line in output.splitlines()[2:] if line.split()}
    assert set(rows) >= {"add_1d", "add_2d", "mul_1d", "all"}
    assert "0% [" in rows["add_1d"] and "100% [" in rows["add_1d"]
    assert not rows["add_1d"].endswith("+")  # 2 items gained: could be chance (McNemar p 0.5)
    assert rows["all"].endswith("+")  # 6 gained, none lost: p 0.03
    assert llm.loaded == [(f"eval-{adapter.pk}", adapter.path)]
    assert "+ / -: right on significantly more / fewer of the same items" in output


def test_it_says_clearly_what_is_wrong(setup, tmp_path):
    _, _, adapter = setup
    other = LanguageModel.objects.create(name="other", is_student=True, source="/x")
    foreign = Adapter.objects.create(base_model=other, version=1, path=adapter.path, method="sft")
    for args, said in (
        (["--adapter", str(foreign.pk)], "was trained on other, not scripted-student"),
        (["--adapter", "999"], "no adapter with id 999"),
        (["--adapter", str(tmp_path)], "no adapter_config.json"),
        (["--split", "keep"], "has no items in the exam items of the keep skills"),
    ):
        with pytest.raises(CommandError, match=said):
            evaluate(*args)
    with pytest.raises(CommandError, match="no course 'nope'"):
        call_command("evaluate", "--course", "nope")
