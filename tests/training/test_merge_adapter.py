"""`manage.py merge_adapter`: an adapter id or folder in, a plain transformers folder (or one line) out."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
import torch
from django.core.management import CommandError, call_command

from tests.tiny_model import build_tiny_lora
from tests.training.core.test_merge import NEW_TOKENS, QUESTION, nothing_written, plain_reply
from training.core.merge import MERGE_RECORD
from training.models import Adapter, LanguageModel

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def tiny_lora(tiny_model_dir, tmp_path_factory) -> Path:
    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("tiny-lora"))


@pytest.fixture
def student(tiny_model_dir) -> LanguageModel:
    return LanguageModel.objects.create(
        name="tiny",
        source=str(tiny_model_dir),
        is_student=True,
        is_default_student=True,
        backend=LanguageModel.Backend.TRANSFORMERS,
    )


@pytest.fixture
def adapter(student, tiny_lora) -> Adapter:
    return Adapter.objects.create(base_model=student, version=1, path=str(tiny_lora), method="sft")


def merge(*args: str) -> str:
    out = io.StringIO()
    call_command("merge_adapter", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_it_merges_an_adapter_by_id_into_a_folder_that_loads_without_peft(adapter, tmp_path):
    out = tmp_path / "merged"
    printed = merge(str(adapter.pk), "--out", str(out))
    assert printed.splitlines() == [f"merged adapter {adapter.pk} into tiny", str(out)]
    assert (out / "config.json").is_file() and not (out / "adapter_config.json").exists()
    assert json.loads((out / MERGE_RECORD).read_text())["adapter"] == adapter.path
    assert plain_reply(out)


def test_it_merges_a_folder_into_the_default_student_or_the_one_named(student, tiny_lora, tmp_path):
    assert merge(str(tiny_lora), "--out", str(tmp_path / "a")).startswith(f"merged {tiny_lora} into tiny")
    LanguageModel.objects.filter(pk=student.pk).update(is_default_student=False)
    merge(str(tiny_lora), "--student", "tiny", "--out", str(tmp_path / "b"))
    assert (tmp_path / "b" / "config.json").is_file()


def test_it_writes_the_students_chat_template_override(student, adapter, tmp_path):
    from transformers import AutoTokenizer

    student.chat_template = "{% for m in messages %}{{ m['content'] }}\n{% endfor %}"
    student.save()
    merge(str(adapter.pk), "--out", str(tmp_path / "merged"))
    assert AutoTokenizer.from_pretrained(tmp_path / "merged").chat_template == student.chat_template


def test_it_replaces_an_existing_folder_only_with_force(adapter, tmp_path):
    out = tmp_path / "merged"
    merge(str(adapter.pk), "--out", str(out))
    first = (out / "model.safetensors").stat().st_mtime_ns
    with pytest.raises(CommandError, match=f"^{out} already exists; pass --force to replace it$"):
        merge(str(adapter.pk), "--out", str(out))
    assert (out / "model.safetensors").stat().st_mtime_ns == first
    merge(str(adapter.pk), "--out", str(out), "--force")
    assert (out / "model.safetensors").stat().st_mtime_ns != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged"]


def test_it_says_in_one_line_what_is_wrong_and_writes_nothing(student, adapter, tiny_lora, tmp_path):
    other = LanguageModel.objects.create(name="other", is_student=True, source=str(tmp_path / "x"))
    LanguageModel.objects.create(
        name="served", is_student=True, backend="openai", source="m", base_url="http://x:1/v1"
    )
    foreign = Adapter.objects.create(base_model=other, version=1, path=str(tiny_lora), method="sft")
    empty = tmp_path / "empty"
    empty.mkdir()
    made_elsewhere = Path(shutil.copytree(tiny_lora, tmp_path / "elsewhere"))
    config_file = made_elsewhere / "adapter_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M"}))
    out = tmp_path / "merged"
    for args, said in (
        (["999"], "^no adapter with id 999$"),
        ([str(tmp_path / "nowhere")], "is neither an adapter id nor a folder$"),
        ([str(empty)], r"is not a peft adapter folder \(no adapter_config.json\)$"),
        ([str(made_elsewhere)], f"was made for HuggingFaceTB/SmolLM2-135M, not {student.source}$"),
        ([str(foreign.pk), "--student", "tiny"], f"^adapter {foreign.pk} was trained on other, not tiny$"),
        ([str(adapter.pk), "--student", "nope"], "^no model named 'nope'$"),
        ([str(empty), "--student", "served"], "^served is served over HTTP"),
        ([str(adapter.pk), "--out", str(tiny_lora / "merged")], "overlaps"),
    ):
        with pytest.raises(CommandError, match=said) as caught:
            merge(*args, *([] if "--out" in args else ["--out", str(out)]))
        assert "\n" not in str(caught.value)
    assert nothing_written(out) and not (tiny_lora / "merged").exists()
    LanguageModel.objects.filter(pk=student.pk).update(is_default_student=False)
    with pytest.raises(CommandError, match=r"^no default student; pass --student NAME$"):
        merge(str(made_elsewhere), "--out", str(out))


def test_it_refuses_an_adapter_that_does_not_fit_its_registered_model(student, tiny_lora, tmp_path):
    """A row's own model is trusted by name, not by shape: tensors with no place in the base are refused."""
    from safetensors.torch import load_file, save_file

    folder = Path(shutil.copytree(tiny_lora, tmp_path / "lora"))
    tensors = load_file(str(folder / "adapter_model.safetensors"))
    wider = {k: torch.zeros(v.shape[0], 2 * v.shape[1]) if "lora_A" in k else v for k, v in tensors.items()}
    save_file(wider, str(folder / "adapter_model.safetensors"))
    row = Adapter.objects.create(base_model=student, version=1, path=str(folder), method="sft")
    with pytest.raises(
        CommandError, match=r"does not fit .* has shape \[4, 128\] in the adapter but \[4, 64\]"
    ):
        merge(str(row.pk), "--out", str(tmp_path / "merged"))
    assert nothing_written(tmp_path / "merged")


def test_its_help_names_every_argument():
    from training.management.commands.merge_adapter import Command

    text = Command().create_parser("manage.py", "merge_adapter").format_help()
    for word in ("ADAPTER", "--out", "--force", "--student", "AutoModelForCausalLM"):
        assert word in text


@pytest.mark.slow
def test_the_bundled_model_with_a_lora_merged_answers_as_base_plus_adapter(
    settings, model_cache_dir, tmp_path
):
    """The real student: a random (non-zero) LoRA on SmolLM2-135M, merged, loaded by transformers alone."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from training.core.bundled import BundledModelMissing
    from training.jobs import training_base_path
    from training.services import language_model_llm, language_model_register_bundled

    settings.TEACHLOOP_MODEL_CACHE_DIR = model_cache_dir
    try:
        student, _ = language_model_register_bundled()
    except BundledModelMissing as exc:
        pytest.skip(str(exc))
    base = training_base_path(model=student)  # the GGUF's safetensors copy, as training uses it
    torch.manual_seed(0)
    # init_lora_weights=False: A and B both random, so the adapter changes answers; r=4, alpha=8 keep
    # the change small enough that the model still answers in words (this seed: "2 + 3 = 6." for "= 5").
    lora = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base),
        LoraConfig(
            r=4,
            lora_alpha=8,
            target_modules=["q_proj", "v_proj"],
            init_lora_weights=False,
            task_type="CAUSAL_LM",
        ),
    )
    lora.save_pretrained(tmp_path / "lora")
    del lora
    row = Adapter.objects.create(base_model=student, version=1, path=str(tmp_path / "lora"), method="sft")
    out = tmp_path / "merged"

    merge(str(row.pk), "--out", str(out))

    llm = language_model_llm(model=student)
    llm.load_adapter("lora", row.path)
    params = student.generation_params().replace(max_new_tokens=NEW_TOKENS)
    with_adapter = llm.generate([QUESTION], params, adapter="lora")[0].text
    alone = llm.generate([QUESTION], params)[0].text
    merged = plain_reply(out)
    assert merged == with_adapter, (merged, with_adapter)
    assert merged != alone, alone
    assert {p.name for p in out.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
