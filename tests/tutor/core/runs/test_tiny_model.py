"""One round end to end on the tiny random model, as student and as teacher, with real LoRA training.

The tiny model writes gibberish, so its explanations fail the answer gate; a person's approval
(the ``ratings`` hook) sends them to training, which is what this test needs: every step, the
real models and the real training engine, not a useful lesson.
"""

from __future__ import annotations

import pytest
import torch

from tests.tiny_model import tiny_spec
from tests.tutor.core.runs.fakes import LEGACY_RULES, mini_course
from training.core.config import TrainConfig
from training.core.llm.local import LocalLLM
from training.core.trainer import train
from tutor.core.runs import STEPS, RunConfig, RunState, run_teaching


@pytest.fixture(autouse=True)
def _one_thread():
    """OpenMP threads spin and crawl on 2 shared cores; the tiny model gains nothing from them."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_it_runs_a_round_on_the_tiny_model_and_trains_a_real_adapter(tiny_model_dir, tmp_path):
    course = mini_course(train=2, probe=2, exam=2)
    student = LocalLLM(tiny_spec(tiny_model_dir, name="tiny-student"))
    teacher = LocalLLM(tiny_spec(tiny_model_dir, name="tiny-teacher"))
    trained = []

    def train_fn(records, index, parent, **_):
        config = TrainConfig(
            base_model=str(tiny_model_dir),
            parent_adapter=parent,
            max_steps=2,
            batch_size=2,
            lora_r=4,
            lora_alpha=8,
            learning_rate=1e-3,
            warmup_ratio=0.0,
            checkpoint_every=100,
        )
        result = train(config, records, tmp_path / f"round{index}")
        assert result.status == "succeeded", result.reason
        trained.append(len(records))
        return str(result.adapter_dir)

    def approve_everything():
        state = RunState.load(tmp_path / "state.json")
        return {x.id: True for r in state.rounds for x in r.explanations}

    config = RunConfig(
        **LEGACY_RULES,
        rounds=1,
        plan_budget=3,
        explain_budget=3,
        generate_budget=1,
        generate_k=1,
        siblings=1,
        student_max_new_tokens=8,
        teacher_max_new_tokens=24,
    )
    try:
        state = run_teaching(
            course,
            teacher,
            student,
            config,
            tmp_path / "state.json",
            train_fn=train_fn,
            ratings=approve_everything,
        )
    finally:
        student.close()
        teacher.close()

    (round0,) = state.rounds
    assert state.finished and round0.done_steps == list(STEPS)
    assert round0.explanations and round0.sft_records and trained == [len(round0.sft_records)]
    assert state.adapter_name == "round0"
    assert (tmp_path / "round0" / "adapter" / "adapter_config.json").is_file()
    assert state.adapter_path == str(tmp_path / "round0" / "adapter")
    assert round0.exam["adapter"] == "round0" and round0.exam["base_accuracy"] is not None
    assert set(state.base_exam) == set(state.teacher_exam) == {e.key for e in course.split("exam")}
    assert RunState.load(tmp_path / "state.json") == state
