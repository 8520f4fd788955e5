"""Stage baselines (few-shot): every condition of the ARC table but SEAL, in one process — ICL (no adaptation),
TTT + the base model's own self-edits (sampled here), oracle TTT (the spec's fixed self-edit); one record per
(task, self-edit). See seal_repro/fewshot/conditions.py."""

from __future__ import annotations

from pathlib import Path

from seal_repro.fewshot.conditions import run_baselines
from seal_repro.lmeval.arc import LmEvalArc
from seal_repro.stages.helpers import add_common, load_resolved, memo_of, set_threads, stage_main


def add_args(p):
    add_common(p)
    p.add_argument("--tasks", required=True, help="folder written by the tasks stage")
    p.add_argument("--out", required=True, help="folder for self_edits.jsonl and one sub-folder per condition")


def run(args):
    set_threads()
    run_baselines(load_resolved(args.spec_dir), Path(args.model), Path(args.tasks), Path(args.out), LmEvalArc(),
                  memo_of(args))


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
