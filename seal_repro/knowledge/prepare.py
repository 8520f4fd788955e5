"""The knowledge pipeline's inputs: evaluation passages and questions (lm-eval's input), and the ReST-EM
training passages, checked to share no passage with the evaluation ones."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from seal_repro.data.loaders import load_passages
from seal_repro.data.records import Passage
from seal_repro.errors import DataError
from seal_repro.io import write_jsonl


def _norm(text: str) -> str:
    return " ".join(text.split())


def check_disjoint(train: Sequence[Passage], evaluation: Sequence[Passage]) -> None:
    ids = {p.id for p in evaluation}
    contexts = {_norm(p.context) for p in evaluation}
    both = [p for p in train if p.id in ids or _norm(p.context) in contexts]
    if both:
        shown = ", ".join(f"{p.id} ({p.title!r})" for p in both[:5]) + (" …" if len(both) > 5 else "")
        raise DataError(f"rl.train_data: {len(both)} training passage(s) are also evaluation passages: {shown}")


def _write(out: Path, prefix: str, passages: Sequence[Passage]) -> None:
    write_jsonl(out / f"{prefix}passages.jsonl", [p.to_dict() for p in passages])
    write_jsonl(out / f"{prefix}questions.jsonl", [
        {"id": q.id, "passage_id": p.id, "title": p.title, "question": q.question, "answer": q.answer,
         "golds": list(q.golds)}
        for p in passages for q in p.questions
    ])


def write_data(spec, out: Path) -> tuple[list[Passage], list[Passage]]:
    """passages.jsonl + questions.jsonl (evaluation; a question row carries its passage's title, which an answer
    prompt may show: `evaluation.answer_prompt`'s {title}) and rl_passages.jsonl + rl_questions.jsonl (ReST-EM training,
    empty without an rl section) in `out`; returns (evaluation, training) passages."""
    evaluation = load_passages(spec.data, seed=spec.seed)
    train = load_passages(spec.rl.train_data, seed=spec.seed) if spec.rl is not None else []
    check_disjoint(train, evaluation)
    _write(Path(out), "", evaluation)
    _write(Path(out), "rl_", train)
    return evaluation, train
