"""Error text for people: one line, bounded."""

from __future__ import annotations

import re


def first_line(exc: BaseException, limit: int = 200) -> str:
    """The first line of ``exc``'s message (its type's name when empty), cut to ``limit`` characters."""
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 1] + "…"


def size_mismatch_summary(exc: BaseException) -> str:
    """One line for torch's "size mismatch" load error (the first tensor, its two shapes and how many
    differ), or :func:`first_line` of any other error."""
    text = str(exc)
    found = re.search(
        r"size mismatch for ([\w.]+): copying a param with shape (torch.Size\(\[[\d, ]*\]\)) "
        r"from checkpoint, the shape in current model is (torch.Size\(\[[\d, ]*\]\))",
        text,
    )
    if found:
        name, theirs, ours = found.groups()
        count = text.count("size mismatch")
        return (
            f"{name} has shape {theirs[11:-1]} in the adapter but {ours[11:-1]} in the model "
            f"({count} mismatched tensors)"
        )
    return first_line(exc)
