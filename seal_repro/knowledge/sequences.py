"""Turning a self-edit into training sequences (the "data" half of the inner loop).

Each rule here is a spec switch (see spec/inner_loop.py); unit tests pin each one.
"""

from __future__ import annotations

import re

from seal_repro.spec.inner_loop import InnerLoopSpec

_QUESTION_N = re.compile(r"(?=^Question \d+:)", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*1[.)]\s")


def split_self_edit(text: str, mode: str) -> list[str]:
    text = text.strip()
    if not text:
        return []
    if mode == "none":
        parts = [text]
    elif mode == "segments":
        parts = re.split(r"^\s*---+\s*$", text, flags=re.MULTILINE)
    elif _QUESTION_N.search(text) and mode == "lines":
        # self-QA output: keep each "Question N: ... Answer: ..." block together.
        parts = _QUESTION_N.split(text)
    else:
        parts = text.splitlines()
        # A chatty preamble ("Here are some implications:") before a numbered list carries no facts.
        if len(parts) > 1 and _NUMBERED.match(parts[1]) and not _NUMBERED.match(parts[0]) and parts[0].rstrip().endswith(":"):
            parts = parts[1:]
    return [p.strip() for p in parts if p.strip()]


def training_sequences(self_edit: str | None, title: str, passage: str, spec: InnerLoopSpec) -> list[str]:
    """Sequences for one round: the split self-edit, then (optionally) the passage itself, last."""
    seqs = split_self_edit(self_edit, spec.split) if self_edit else []
    if spec.append_passage or self_edit is None:
        seqs.append(passage.strip())
    if spec.prefix_title:
        seqs = [f"{title}\n{s}" for s in seqs]
    return seqs
