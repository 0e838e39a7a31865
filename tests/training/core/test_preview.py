"""A dataset as the trainer will see it: rendered records, token lengths, cuts and the split."""

from __future__ import annotations

import pytest

from training.core.config import TrainConfig
from training.core.preview import dataset_preview, histogram, record_text
from training.core.trainer import _split


def chat(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_it_renders_lengths_cuts_and_the_trainers_own_split(tokenizer):
    records = [chat(f"What is {i} + {i}?", "word " * (i * 20)) for i in range(1, 11)]
    preview = dataset_preview(records, "sft", tokenizer, max_seq_length=100, eval_fraction=0.2, seed=7)
    texts = [record_text(r, "sft", tokenizer) for r in records]
    assert preview.shown == texts[:5] and "What is 1 + 1?" in preview.shown[0]
    assert preview.lengths == [len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts]
    assert preview.lengths == sorted(preview.lengths)  # longer answers, more tokens
    assert preview.truncated == sum(n > 100 for n in preview.lengths) > 0
    train, held = _split(records, TrainConfig(base_model="m", eval_fraction=0.2, seed=7))
    assert (preview.train, preview.eval) == (len(train), len(held)) == (8, 2)


def test_it_renders_preference_records_with_the_chosen_reply(tokenizer):
    conv = {"prompt": [{"role": "user", "content": "2 + 2?"}], "chosen": "Answer: 4", "rejected": "Answer: 5"}
    plain = {"prompt": "2 + 2? ", "completion": "Answer: 4", "label": True}
    assert "Answer: 4" in record_text(conv, "dpo", tokenizer) and "5" not in record_text(
        conv, "dpo", tokenizer
    )
    assert record_text(plain, "kto", tokenizer) == "2 + 2? Answer: 4"


def test_the_histogram_counts_every_length_once():
    bins = histogram([0, 5, 9, 10, 99])
    assert sum(b.count for b in bins) == 5
    assert (bins[0].low, bins[-1].high) == (0, 100) and bins[-1].count == 1
    assert histogram([]) == []
