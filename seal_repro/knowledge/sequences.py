"""Turning a self-edit into training sequences (the "data" half of the inner loop).

Each rule here is a spec switch (see spec/inner_loop.py); unit tests pin each one. `inner_loop.split_rules` picks
one of two rule sets for `inner_loop.split`:

* `seal_repro` (the embedded default's): `lines` drops a ':'-ended preamble line before a numbered list and keeps
  "Question N:" blocks starting a line together; `segments` cuts at lines made of dashes; `none` keeps the text.
* `reference`: the reference implementation's `build_train_sequences` (knowledge-incorporation/src/utils.py:162-198
  at 4cb1e7d), rule for rule — `lines` is its `split_newlines=True`, `segments` its `split_newlines=False`:
  - the text is cut at every "---" (even inside a line) into stripped, non-empty segments (none: the whole
    stripped text, which may be empty);
  - `lines`, when the text holds both "Question <n>:" and "Answer:" (anywhere): one sequence per "Question <n>:"
    block, cut at each newline followed by "Question <n>:" (the "---" segments ignored, blocks not stripped), the
    first block given a "Question 1: " prefix unless it starts with "Question";
  - `lines`, otherwise: every non-empty stripped line of every segment, numbering kept, and the first line dropped
    when the second starts with "1." (a header such as "**Implications:**");
  - an empty self-edit gives no sequence under `lines` and one empty sequence (a title-only line once prefixed)
    under `segments`; the "passage only" condition (no self-edit) is the empty self-edit.

The passage is appended last (`append_passage`) and, with `prefix_title`, every sequence becomes
`TITLE_TEMPLATE.format(title=..., text=...)` — the reference's TRAINING_SEQUENCE_TEMPLATE, '{title}\\n{completion_text}'.
"""

from __future__ import annotations

import re

from seal_repro.spec.inner_loop import InnerLoopSpec

TITLE_TEMPLATE = "{title}\n{text}"

_QUESTION_N = re.compile(r"(?=^Question \d+:)", re.MULTILINE)
_NUMBERED = re.compile(r"^\s*1[.)]\s")

# reference rules
_REF_QUESTION = re.compile(r"Question\s+\d+:")
_REF_ANSWER = re.compile(r"Answer\s*:")
_REF_QA_CUT = re.compile(r"\n(?=Question\s+\d+:)")


def split_self_edit(text: str, mode: str) -> list[str]:
    """The embedded default's rules (`split_rules: seal_repro`)."""
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


def split_reference(text: str, mode: str) -> list[str]:
    """The reference's rules (`split_rules: reference`); see the module docstring. May return an empty string
    (`segments` of an empty self-edit), which the title prefix turns into a title-only sequence."""
    if mode == "none":
        return [text.strip()]
    segments = [s.strip() for s in text.split("---") if s.strip()] or [text.strip()]
    if mode == "segments":
        return segments
    if _REF_QUESTION.search(text) and _REF_ANSWER.search(text):
        blocks = _REF_QA_CUT.split(text.strip())
        if not blocks[0].lstrip().startswith("Question"):
            blocks[0] = "Question 1: " + blocks[0].strip()
        return blocks
    lines = [line.strip() for seg in segments for line in seg.splitlines() if line.strip()]
    if len(lines) > 1 and lines[1].startswith("1."):
        lines = lines[1:]
    return lines


def training_sequences(self_edit: str | None, title: str, passage: str, spec: InnerLoopSpec) -> list[str]:
    """Sequences for one round: the split self-edit, then (optionally) the passage itself, last."""
    reference = spec.split_rules == "reference"
    if reference:
        seqs = split_reference(self_edit or "", spec.split)
    else:
        seqs = split_self_edit(self_edit, spec.split) if self_edit else []
    if spec.append_passage or self_edit is None:
        seqs.append(passage.strip())
    if spec.prefix_title:
        return [TITLE_TEMPLATE.format(title=title, text=s) for s in seqs]
    if reference:  # an empty sequence (segments of an empty self-edit) means something only with its title
        return [s for s in seqs if s]
    return seqs
