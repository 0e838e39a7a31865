"""merge_adapter on the tiny model: a plain folder that answers as base + adapter, and every refusal."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.tiny_model import CHAT_TEMPLATE, tiny_spec
from training.core.llm.local import LocalLLM
from training.core.merge import MERGE_RECORD, MergeError, merge_adapter

QUESTION = [{"role": "user", "content": "What is 2+3?"}]
NEW_TOKENS = 12


def plain_reply(folder: Path, conversation=QUESTION) -> str:
    """The greedy reply of the model in ``folder``, loaded by transformers alone (no peft, no TeachLoop)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__module__.startswith("transformers.")
    prompt = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.inference_mode():
        output = model.generate(**ids, max_new_tokens=NEW_TOKENS, do_sample=False)
    return tokenizer.decode(output[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def nothing_written(out: Path) -> bool:
    """No ``out`` and no temporary sibling of it."""
    return not out.exists() and not list(out.parent.glob(f".{out.name}.*"))


@pytest.fixture
def lora_copy(tiny_lora_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_lora_dir, tmp_path / "lora"))


def test_it_writes_a_plain_folder_that_answers_as_base_plus_adapter(tiny_model_dir, tiny_lora_dir, tmp_path):
    out = merge_adapter(tiny_lora_dir, str(tiny_model_dir), tmp_path / "merged")

    assert (out / "config.json").is_file() and list(out.glob("*.safetensors"))
    assert not (out / "adapter_config.json").exists()
    assert json.loads((out / MERGE_RECORD).read_text())["adapter"] == str(tiny_lora_dir)
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    try:
        llm.load_adapter("lora", str(tiny_lora_dir))
        params = llm.spec.defaults.replace(max_new_tokens=NEW_TOKENS)
        with_adapter = llm.generate([QUESTION], params, adapter="lora")[0].text
        base = llm.generate([QUESTION], params)[0].text
    finally:
        llm.close()
    merged = plain_reply(out)
    assert merged == with_adapter
    assert merged != base


def test_it_writes_the_chat_template_inference_uses(tiny_model_dir, tiny_lora_dir, tmp_path):
    from transformers import AutoTokenizer

    own = merge_adapter(tiny_lora_dir, str(tiny_model_dir), tmp_path / "own")
    assert AutoTokenizer.from_pretrained(own).chat_template == CHAT_TEMPLATE
    override = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    given = merge_adapter(tiny_lora_dir, str(tiny_model_dir), tmp_path / "given", chat_template=override)
    assert AutoTokenizer.from_pretrained(given).chat_template == override


def test_it_refuses_a_folder_that_is_not_a_peft_adapter(tiny_model_dir, lora_copy, tmp_path):
    out = tmp_path / "merged"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MergeError, match=r"is not a peft adapter folder \(no adapter_config.json\)"):
        merge_adapter(empty, str(tiny_model_dir), out)
    with pytest.raises(MergeError, match="no adapter folder at"):
        merge_adapter(tmp_path / "nowhere", str(tiny_model_dir), out)
    with pytest.raises(MergeError, match="not a peft adapter folder"):
        merge_adapter(tiny_model_dir, str(tiny_model_dir), out)  # a model folder, not an adapter

    (lora_copy / "adapter_model.safetensors").unlink()
    with pytest.raises(MergeError, match="has no adapter weights"):
        merge_adapter(lora_copy, str(tiny_model_dir), out)
    (lora_copy / "adapter_config.json").write_text("{not json")
    with pytest.raises(MergeError, match=r"adapter_config\.json is unreadable"):
        merge_adapter(lora_copy, str(tiny_model_dir), out)
    (lora_copy / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "x"}))
    with pytest.raises(MergeError, match=r"not a peft adapter config \(no peft_type\)"):
        merge_adapter(lora_copy, str(tiny_model_dir), out)
    assert nothing_written(out)


def test_it_refuses_an_adapter_made_for_another_base(tiny_model_dir, lora_copy, tmp_path):
    out = tmp_path / "merged"
    config_file = lora_copy / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}))
    with pytest.raises(MergeError, match=f"was made for HuggingFaceTB/SmolLM2-135M, not {tiny_model_dir}$"):
        merge_adapter(lora_copy, str(tiny_model_dir), out)
    assert nothing_written(out)


def test_it_refuses_an_adapter_whose_tensors_do_not_fit_whatever_its_config_says(
    tiny_model_dir, lora_copy, tmp_path
):
    out = tmp_path / "merged"
    weights = lora_copy / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    wider = {k: torch.zeros(v.shape[0], 2 * v.shape[1]) if "lora_A" in k else v for k, v in tensors.items()}
    save_file(wider, str(weights))
    with pytest.raises(MergeError, match=r"does not fit .*lora_A.* has shape \[4, 128\] in the adapter but"):
        merge_adapter(lora_copy, str(tiny_model_dir), out, check_base=False)

    # A layer the base does not have: peft would drop its tensors without a word.
    extra = {
        **tensors,
        **{k.replace("layers.1.", "layers.7."): v.clone() for k, v in tensors.items() if "layers.1." in k},
    }
    save_file(extra, str(weights))
    with pytest.raises(MergeError, match=r"4 adapter tensors have no place in it \(e.g. .*layers.7"):
        merge_adapter(lora_copy, str(tiny_model_dir), out)
    save_file({k: v for k, v in tensors.items() if "layers.1." not in k}, str(weights))
    with pytest.raises(MergeError, match="4 LoRA weights it needs are not in the adapter"):
        merge_adapter(lora_copy, str(tiny_model_dir), out)
    assert nothing_written(out)


def test_it_refuses_an_existing_out_unless_told_to_replace_it(tiny_model_dir, tiny_lora_dir, tmp_path):
    out = tmp_path / "merged"
    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(MergeError, match=f"{out} already exists; pass --force to replace it"):
        merge_adapter(tiny_lora_dir, str(tiny_model_dir), out)
    assert (out / "config.json").read_text() == "{}"

    merge_adapter(tiny_lora_dir, str(tiny_model_dir), out, replace=True)
    assert json.loads((out / "config.json").read_text())["model_type"] == "llama"
    assert (out / MERGE_RECORD).is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]  # no temporary or old folder left

    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(MergeError, match=r"is not a model folder .* not replacing it"):
        merge_adapter(tiny_lora_dir, str(tiny_model_dir), precious, replace=True)
    assert (precious / "notes.txt").read_text() == "keep me"


def test_it_refuses_an_out_that_overlaps_the_adapter_or_the_base(tiny_model_dir, lora_copy, tmp_path):
    for out in (lora_copy, lora_copy / "merged", tiny_model_dir, tmp_path):
        with pytest.raises(MergeError, match="overlaps"):
            merge_adapter(lora_copy, str(tiny_model_dir), out, replace=True)
    assert (lora_copy / "adapter_config.json").is_file()


def test_a_crash_while_writing_leaves_no_folder_and_the_old_one_untouched(
    tiny_model_dir, tiny_lora_dir, tmp_path, monkeypatch
):
    from transformers import PreTrainedTokenizerBase

    def crash(self, folder, *args, **kwargs):  # the weights are on disk by now
        assert list(Path(folder).glob("*.safetensors"))
        raise OSError("No space left on device")

    monkeypatch.setattr(PreTrainedTokenizerBase, "save_pretrained", crash)
    out = tmp_path / "merged"
    with pytest.raises(OSError, match="No space left"):
        merge_adapter(tiny_lora_dir, str(tiny_model_dir), out)
    assert nothing_written(out)

    out.mkdir()
    (out / "config.json").write_text("{}")
    with pytest.raises(OSError, match="No space left"):
        merge_adapter(tiny_lora_dir, str(tiny_model_dir), out, replace=True)
    assert [p.name for p in out.iterdir()] == ["config.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_an_adapter_teachloop_trained_merges_and_answers_as_before(tiny_model_dir, tmp_path):
    from tests.training.core.test_trainer import chat_records, quick
    from training.core.trainer import train

    result = train(quick(tiny_model_dir, max_steps=4), chat_records(), tmp_path / "run")
    assert result.status == "succeeded", result.reason
    out = merge_adapter(result.adapter_dir, str(tiny_model_dir), tmp_path / "merged")
    llm = LocalLLM(tiny_spec(tiny_model_dir))
    try:
        llm.load_adapter("trained", str(result.adapter_dir))
        params = llm.spec.defaults.replace(max_new_tokens=NEW_TOKENS)
        assert plain_reply(out) == llm.generate([QUESTION], params, adapter="trained")[0].text
    finally:
        llm.close()
