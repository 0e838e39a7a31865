"""Experiment tracking: the reporter a config names reaches TRL's arguments, or fails at once when its
package is missing (they are not dependencies of TeachLoop)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from training.core.config import REPORTERS, TrainConfig, missing_reporter_package
from training.core.trainer import tensorboard_dir, train, trainer_args


def absent_reporter() -> str:
    """A reporter none of whose packages is installed here (the test needs one)."""
    for name, packages in REPORTERS.items():
        if packages and all(importlib.util.find_spec(p) is None for p in packages):
            return name
    pytest.skip("every reporter's package is installed here")


def test_the_reporter_and_run_name_reach_the_trl_arguments(tmp_path):
    from trl import SFTConfig

    config = TrainConfig(base_model="m", report_to="wandb", run_name="teachloop-job-7-x")
    args = trainer_args(config, tmp_path / "checkpoints", evaluate=False, cuda=False, bf16=False)
    assert (args["report_to"], args["run_name"]) == ("wandb", "teachloop-job-7-x")
    trl_args = SFTConfig(**args)  # TRL reads them as given (it checks the package only for "all")
    assert (trl_args.report_to, trl_args.run_name) == (["wandb"], "teachloop-job-7-x")


def test_nothing_is_reported_by_default(tmp_path):
    args = trainer_args(TrainConfig(base_model="m"), tmp_path, evaluate=False, cuda=False, bf16=False)
    assert args["report_to"] == "none"
    assert args["run_name"] is None


def test_tensorboard_writes_into_the_output_folder(tmp_path):
    assert tensorboard_dir(tmp_path / "job" / "checkpoints") == tmp_path / "job" / "tensorboard"


def test_an_unknown_reporter_is_refused_by_the_config():
    with pytest.raises(ValueError, match=r"^report_to must be one of none, tensorboard, mlflow, wandb"):
        TrainConfig(base_model="m", report_to="comet")


def test_it_fails_before_loading_anything_when_the_reporters_package_is_missing(tmp_path):
    reporter = absent_reporter()
    package = REPORTERS[reporter][0]
    assert missing_reporter_package(reporter) == package
    assert missing_reporter_package("none") is None
    # A base model that does not exist: reaching the model loader would raise instead of failing.
    config = TrainConfig(base_model=str(tmp_path / "no-such-model"), report_to=reporter)
    records = [{"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]}]
    result = train(config, records, Path(tmp_path / "out"))
    assert result.status == "failed"
    assert f"needs the {package} package" in result.reason
    assert f"pip install {package}" in result.reason


def test_resuming_ignores_a_change_of_tracker():
    a = TrainConfig(base_model="m")
    b = TrainConfig(base_model="m", report_to="tensorboard", run_name="r")
    assert a.differences(b) == ["report_to", "run_name"]
    assert a.training_differences(b) == []
