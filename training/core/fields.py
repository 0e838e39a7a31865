"""Settings with their help text, as PEFT's ``LoraConfig`` and TRL's ``SFTConfig`` carry it.

A config dataclass declares each field with :func:`setting`; CLIs and forms read the text back
with :func:`setting_help` instead of writing it again, so the help cannot drift from the field.
"""

from __future__ import annotations

from dataclasses import MISSING, field, fields
from typing import Any


def setting(default: Any = MISSING, *, help: str) -> Any:
    """A dataclass field with ``help`` in its metadata (no default: a required field)."""
    return field(default=default, metadata={"help": help})


def setting_help(cls: type, name: str) -> str:
    """The help text of field ``name`` of the dataclass ``cls`` (KeyError for an unknown field)."""
    return {f.name: f for f in fields(cls)}[name].metadata["help"]


def setting_default(cls: type, name: str) -> Any:
    """The default of field ``name`` of the dataclass ``cls``."""
    return {f.name: f for f in fields(cls)}[name].default
