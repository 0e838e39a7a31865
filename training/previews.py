"""A dataset as a training job will see it (the dataset page): the preview, and the chat JSONL."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterator

from training.core.config import TrainConfig
from training.core.fields import setting_default
from training.core.preview import DatasetPreview, dataset_preview
from training.jobs import training_base_path
from training.models import LanguageModel, TrainingDataset


@functools.lru_cache(maxsize=4)
def _tokenizer(path: str, changed: str):
    """One loaded tokenizer per model folder and registry change (``changed``: its updated_at)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def dataset_preview_for(*, dataset: TrainingDataset, model: LanguageModel) -> DatasetPreview:
    """The dataset through ``model``'s chat template, at the trainer's default maximum length and
    eval split. Loads the tokenizer (and converts a GGUF model once), so call it off the main page."""
    tokenizer = _tokenizer(training_base_path(model=model), model.updated_at.isoformat())
    return dataset_preview(
        dataset.records,
        dataset.method,
        tokenizer,
        max_seq_length=setting_default(TrainConfig, "max_seq_length"),
        eval_fraction=setting_default(TrainConfig, "eval_fraction"),
        seed=setting_default(TrainConfig, "seed"),
    )


def dataset_jsonl(*, dataset: TrainingDataset) -> Iterator[str]:
    """The records, one JSON object per line: the chat format TRL and OpenAI fine-tuning read."""
    for record in dataset.records:
        yield json.dumps(record, ensure_ascii=False) + "\n"
