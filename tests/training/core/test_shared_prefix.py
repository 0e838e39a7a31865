"""A padding-free batch whose examples begin alike computes the common tokens once, and trains the same."""

from __future__ import annotations

import pytest
import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

import training.core.trainer as engine
from training.core.cpu_paths import (
    SHARED_PREFIX,
    SharedPrefixCollator,
    attend_within_each_sequence,
    shared_prefix_length,
    shared_prefix_tokens_saved,
)
from training.core.trainer import train

SYSTEM = "You are a patient tutor. Answer with the number, then stop."


def _example(ids: list[int], prompt_len: int) -> dict:
    return {"input_ids": ids, "labels": [-100] * prompt_len + ids[prompt_len:]}


def test_it_shares_the_common_start_up_to_before_the_first_labelled_token():
    same = [1, 2, 3, 4, 5, 6]
    assert shared_prefix_length([_example([*same, 7, 8], 7), _example([*same, 9, 10], 7)]) == 6
    # An answer that starts at token 4 of one example: the prefix stops one token before it.
    assert shared_prefix_length([_example([*same, 7, 8], 7), _example([*same, 9, 10], 4)]) == 3
    assert shared_prefix_length([_example([1, 2, 3], 1), _example([9, 2, 3], 1)]) == 0
    # Without labels every token counts: nothing is shared.
    assert shared_prefix_length([{"input_ids": [1, 2, 3]}, {"input_ids": [1, 2, 3]}]) == 0


def _chat_examples(tokenizer, questions_and_answers):
    examples = []
    for question, answer in questions_and_answers:
        prompt = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": question}]
        prompt_ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=False)
        answered = [*prompt, {"role": "assistant", "content": answer}]
        full = tokenizer.apply_chat_template(answered, tokenize=False)
        prompt_len = len(tokenizer(prompt_ids)["input_ids"])
        examples.append(_example(tokenizer(full)["input_ids"], prompt_len))
    return examples


def test_a_shared_prefix_gives_the_loss_and_gradients_of_the_plain_row(tiny_model_dir):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = _chat_examples(
        tokenizer,
        [("What is 2+3?", "The answer is 5."), ("What is 7 times 6?", "42."), ("Hello!", "Hello! 100")],
    )
    plain_collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    plain = plain_collate(examples)
    shared = SharedPrefixCollator(plain_collate)(examples)
    prefix = shared[SHARED_PREFIX]
    assert prefix >= 8  # the system prompt and more
    assert shared["input_ids"].shape[1] == plain["input_ids"].shape[1] - 2 * prefix
    assert shared_prefix_tokens_saved(shared) == 2 * prefix and shared_prefix_tokens_saved(plain) == 0
    # The same labelled tokens, in the same order.
    assert torch.equal(shared["labels"][shared["labels"] != -100], plain["labels"][plain["labels"] != -100])

    losses, grads = {}, {}
    for name, batch in (("plain", plain), ("shared", shared)):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa")
        model.config.use_cache = False
        if name == "shared":  # the plain row takes transformers' own path: sdpa over a block-diagonal mask
            assert attend_within_each_sequence(model)
        model = get_peft_model(
            model, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj"], init_lora_weights=False)
        )
        loss = model(**batch).loss
        loss.backward()
        losses[name] = loss.item()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    assert losses["shared"] == pytest.approx(losses["plain"], abs=1e-5)
    assert grads["shared"].keys() == grads["plain"].keys() and grads["plain"]
    for name, grad in grads["plain"].items():
        torch.testing.assert_close(grads["shared"][name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_a_batch_without_enough_in_common_is_left_as_it_is(tiny_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    examples = [_example(tokenizer(t)["input_ids"], 2) for t in ("What is 2+3? 5", "Hello! How are you?")]
    collate = DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id, padding_free=True)
    batch = SharedPrefixCollator(collate)(examples)
    assert SHARED_PREFIX not in batch
    assert torch.equal(batch["input_ids"], collate(examples)["input_ids"])


def test_training_shares_prefixes_and_counts_every_token_of_the_data(tiny_model_dir, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    records = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": f"What is {i}+{i}?"},
                {"role": "assistant", "content": f"The answer is {2 * i}."},
            ]
        }
        for i in range(8)
    ]
    trainers: list = []
    real = engine._build_trainer
    monkeypatch.setattr(
        engine, "_build_trainer", lambda *a, **k: trainers.append(real(*a, **k)) or trainers[-1]
    )
    config = engine.TrainConfig(
        base_model=str(tiny_model_dir),
        max_steps=2,
        batch_size=4,
        learning_rate=1e-2,
        warmup_ratio=0.0,
        checkpoint_every=100,
        lora_r=4,
        lora_alpha=8,
    )
    losses = {}
    for shared in (True, False):
        if not shared:  # the same run with rows laid out as TRL lays them out
            monkeypatch.setattr(engine, "SharedPrefixCollator", lambda collate: collate)
        result = train(config, records, tmp_path / str(shared))
        assert result.status == "succeeded", result.reason
        losses[shared] = (result.metrics["first_loss"], result.metrics["final_loss"])
        trainer = trainers[-1]
        assert isinstance(trainer.data_collator, SharedPrefixCollator) == shared
        assert (trainer.shared_prefix_tokens > 0) == shared
        # Two steps of four: every record once. The count is the data's tokens, not the row's positions.
        assert result.metrics["tokens"] == sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    # TRL's fused LM head path passes the prefix on to the attention: the same losses, step by step.
    assert losses[True] == pytest.approx(losses[False], rel=1e-4)
