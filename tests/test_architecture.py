"""Layering rules from DESIGN.md that a test must keep true."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.paths import ROOT

CORE_PACKAGES = ["tutor/core", "training/core"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def python_files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package", CORE_PACKAGES)
def test_it_keeps_django_out_of_core_sources(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if m.split(".")[0] == "django")
        for path in python_files(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_it_imports_every_core_module_without_loading_django():
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
        for package in CORE_PACKAGES
        for path in python_files(package)
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]


def test_it_keeps_training_independent_of_tutor():
    offenders = [
        str(path.relative_to(ROOT))
        for path in python_files("training")
        if any(m.split(".")[0] == "tutor" for m in imported_modules(path))
    ]
    assert offenders == []


@pytest.mark.django_db
def test_it_has_a_migration_for_every_model_change():
    from django.core.management import call_command

    call_command("makemigrations", "--check", "--dry-run", verbosity=0)  # exits non-zero when one is missing


ROOMS = {"runs": ("tutor.runs", "tutor.core.runs"), "learn": ("tutor.learn", "tutor.core.learn")}


def _in_room(module: str, room: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in ROOMS[room])


@pytest.mark.parametrize(("room", "other"), [("runs", "learn"), ("learn", "runs")])
def test_it_keeps_runs_and_learn_apart(room, other):
    """Teaching runs of models and human learners share courses and training, never each other."""
    packages = [f"tutor/{room}", f"tutor/core/{room}"]
    offenders = {
        str(path.relative_to(ROOT)): sorted(m for m in imported_modules(path) if _in_room(m, other))
        for package in packages
        for path in python_files(package)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_it_has_no_flat_room_modules():
    """Rooms are sub-packages of tutor/, not suffixes (views_learn.py, forms_runs.py)."""
    flat = [p.name for p in (ROOT / "tutor").glob("*.py") if p.stem.endswith(("_learn", "_runs"))]
    assert flat == []
