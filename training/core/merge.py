"""Merge a LoRA adapter into its base model: one plain transformers folder that loads without peft.

Rules that matter:
- the adapter is a PEFT folder: ``adapter_config.json`` (a JSON object naming its ``peft_type``) and
  ``adapter_model.safetensors`` (or ``.bin``); anything else is refused before a model is loaded;
- it must be made for ``base``. With ``check_base`` (the caller has nothing better to go on, e.g. a
  bare folder), its ``base_model_name_or_path`` must name the same model as ``base``: the same string,
  or the same folder once both are resolved. Whatever the names say, every adapter tensor must land on
  a module of the base with the same shape, and every LoRA module the config asks for must get its
  tensor: a shape, a layer count or a module name that differs means another base, and is refused;
- the base is loaded on the CPU in float32, so the merged weights equal base + adapter as peft runs
  them (a bfloat16 merge rounds much of the small LoRA update away), merged with peft's
  ``merge_and_unload`` (``safe_merge``: a NaN refuses), and written in the base's own dtype;
- ``out`` gets the merged weights (safetensors), config, generation config, the base's tokenizer with
  the chat template TeachLoop's inference uses for the model (``chat_template`` when given, else the
  tokenizer's own) and ``teachloop_merge.json`` (what was merged). No adapter file: it loads with
  ``AutoModelForCausalLM.from_pretrained(out)`` alone and answers greedily as base + adapter does;
- ``out`` is never half-written: everything goes to a hidden sibling ``.<name>.tmp-<random>`` that
  is renamed to ``out`` once complete. An existing ``out`` is refused unless ``replace``; then it
  is swapped out only after the new folder is complete (renamed aside, the new one renamed in, the
  old one deleted; put back if the second rename fails). A failure removes the temporary folder; a
  killed process can leave it behind, never a partial ``out``. ``replace`` replaces only a model
  folder (with a ``config.json``) or an empty one, and ``out`` may not hold, or lie in, the adapter
  or the base folder;
- expected failures raise :class:`MergeError` with one line a person can act on.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.core.errors import first_line, size_mismatch_summary

Progress = Callable[[str], None]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
MERGE_RECORD = "teachloop_merge.json"


class MergeError(Exception):
    """The merge was refused or failed; the message is one line that says why."""


@dataclass(frozen=True)
class AdapterFolder:
    """A checked PEFT adapter folder."""

    path: Path
    config: dict[str, Any]
    weights: Path

    @property
    def base(self) -> str:
        """The base model the adapter says it was made for ("" when it does not say)."""
        return str(self.config.get("base_model_name_or_path") or "")


def read_adapter(folder: Path | str) -> AdapterFolder:
    """``folder`` as a PEFT adapter folder, or :class:`MergeError` saying what is missing."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise MergeError(f"no adapter folder at {folder}")
    config_file = path / ADAPTER_CONFIG
    if not config_file.is_file():
        raise MergeError(f"{folder} is not a peft adapter folder (no {ADAPTER_CONFIG})")
    try:
        config = json.loads(config_file.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MergeError(f"{config_file} is unreadable: {first_line(exc)}") from exc
    if not isinstance(config, dict) or not config.get("peft_type"):
        raise MergeError(f"{config_file} is not a peft adapter config (no peft_type)")
    weights = next((path / name for name in ADAPTER_WEIGHTS if (path / name).is_file()), None)
    if weights is None:
        raise MergeError(f"{folder} has no adapter weights ({' or '.join(ADAPTER_WEIGHTS)})")
    return AdapterFolder(path=path, config=config, weights=weights)


def same_model(a: str, b: str) -> bool:
    """Whether two base-model names (Hugging Face ids or folders) name the same model."""

    def norm(name: str) -> str:
        path = Path(name).expanduser()
        return str(path.resolve()) if path.exists() else name.rstrip("/")

    return norm(a) == norm(b)


def check_out(out: Path | str, *, replace: bool, keep: tuple[Path | str, ...] = ()) -> Path:
    """``out`` as a path to write to: refused when it exists (unless ``replace``) or when it holds, or
    lies in, one of the ``keep`` folders (the adapter, the base)."""
    out = Path(out).expanduser()
    target = out.resolve()
    for folder in keep:
        kept = Path(folder).expanduser()
        if not kept.exists():  # a Hugging Face id: nothing on disk to overwrite
            continue
        kept = kept.resolve()
        if target == kept or kept in target.parents or target in kept.parents:
            raise MergeError(f"{out} overlaps {folder}, which the merge reads; choose another folder")
    if out.exists() or out.is_symlink():
        if not replace:
            raise MergeError(f"{out} already exists; pass --force to replace it")
        # A slip of the finger must not delete a home folder: only a model folder or an empty one goes.
        if not out.is_dir() or not ((out / "config.json").is_file() or not any(out.iterdir())):
            raise MergeError(f"{out} is not a model folder (no config.json) nor empty; not replacing it")
    return out


def merge_adapter(
    adapter: Path | str,
    base: str,
    out: Path | str,
    *,
    replace: bool = False,
    check_base: bool = True,
    chat_template: str = "",
    progress: Progress | None = None,
) -> Path:
    """Write ``base`` with ``adapter`` merged into it as a plain transformers folder at ``out``.

    ``base`` is a folder or Hugging Face id (a GGUF model's converted copy, not the .gguf file).
    Returns ``out``. See the module docstring for the rules.
    """
    say = progress or (lambda _: None)
    folder = read_adapter(adapter)
    if check_base and not same_model(folder.base, base):
        made_for = folder.base or "an unnamed base (no base_model_name_or_path)"
        raise MergeError(f"adapter {adapter} was made for {made_for}, not {base}")
    out = check_out(out, replace=replace, keep=(folder.path, base))

    say(f"Loading {base} and the adapter…")
    tokenizer, model, dtype = _load_base(base)
    if chat_template:
        tokenizer.chat_template = chat_template
    merged = _merge(model, folder, base)
    if dtype is not None and dtype != merged.dtype:
        merged = merged.to(dtype)
    record = {"base": base, "adapter": str(folder.path), "adapter_base": folder.base}

    def write(tmp: Path) -> None:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        (tmp / MERGE_RECORD).write_text(json.dumps(record, indent=2) + "\n")

    say(f"Writing {out}…")
    _write_whole(out, write, replace=replace)
    return out


def _load_base(base: str) -> tuple[Any, Any, Any]:
    """(tokenizer, float32 model on the CPU, the dtype the base is stored in or None)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        stored = getattr(AutoConfig.from_pretrained(base), "dtype", None)
        tokenizer = AutoTokenizer.from_pretrained(base)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    except Exception as exc:  # transformers raises OSError/ValueError/hub errors: all mean "can't load"
        raise MergeError(f"could not load the base model {base}: {first_line(exc)}") from exc
    if isinstance(stored, str):
        stored = getattr(torch, stored.removeprefix("torch."), None)
    keep = stored if stored in (torch.float16, torch.bfloat16, torch.float32) else None
    return tokenizer, model, keep


def _merge(model: Any, folder: AdapterFolder, base: str) -> Any:
    """``model`` with the adapter loaded and merged in; MergeError when it does not fit the base."""
    from peft import PeftModel
    from peft.utils import get_peft_model_state_dict

    try:
        with warnings.catch_warnings():  # missing tensors are checked below, and refused with one line
            warnings.filterwarnings("ignore", message="Found missing adapter keys")
            peft_model = PeftModel.from_pretrained(model, str(folder.path))
    except (RuntimeError, ValueError) as exc:  # size mismatch; target modules not found
        raise MergeError(
            f"adapter {folder.path} (made for {folder.base or '?'}) does not fit {base}: "
            f"{size_mismatch_summary(exc)}"
        ) from exc
    # peft loads leniently: tensors with no place in this base are dropped and places with no tensor
    # keep their initial (no-op) values, so a base with other layers or modules would load silently.
    expected = set(get_peft_model_state_dict(peft_model))
    stored = _tensor_names(folder.weights)
    if expected != stored:
        extra, missing = sorted(stored - expected), sorted(expected - stored)
        detail = f"{len(extra)} adapter tensors have no place in it (e.g. {extra[0]})" if extra else ""
        if missing:
            detail += "; " if detail else ""
            detail += f"{len(missing)} LoRA weights it needs are not in the adapter (e.g. {missing[0]})"
        raise MergeError(
            f"adapter {folder.path} (made for {folder.base or '?'}) does not fit {base}: {detail}"
        )
    merge = getattr(peft_model.base_model, "merge_and_unload", None)
    if merge is None:
        raise MergeError(
            f"adapter {folder.path} is a {folder.config['peft_type']} adapter, which cannot be merged"
        )
    try:
        return merge(safe_merge=True)
    except ValueError as exc:  # safe_merge found NaNs
        raise MergeError(f"merging adapter {folder.path} failed: {first_line(exc)}") from exc


def _tensor_names(weights: Path) -> set[str]:
    if weights.suffix == ".safetensors":
        from safetensors import safe_open

        with safe_open(str(weights), framework="pt") as handle:
            return set(handle.keys())
    import torch

    return set(torch.load(weights, map_location="cpu", weights_only=True))


def _write_whole(out: Path, write: Callable[[Path], None], *, replace: bool) -> None:
    """Run ``write`` into a temporary sibling of ``out`` and rename it into place once it returns."""
    out.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    tmp = out.with_name(f".{out.name}.tmp-{token}")
    tmp.mkdir()
    try:
        write(tmp)
        if out.exists() or out.is_symlink():
            if not replace:  # appeared while we were writing
                raise MergeError(f"{out} already exists; pass --force to replace it")
            old = out.with_name(f".{out.name}.old-{token}")
            os.rename(out, old)
            try:
                os.rename(tmp, out)
            except OSError:
                os.rename(old, out)
                raise
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
        else:
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
