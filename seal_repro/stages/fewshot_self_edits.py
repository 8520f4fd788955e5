"""Stage fewshot_self_edits: the base model samples `self_edit.n_eval` self-edits for every evaluation
task (the "TTT + self-edit without RL" condition)."""

from __future__ import annotations

from pathlib import Path

from seal_repro import models
from seal_repro.fewshot.rl import sample_self_edits
from seal_repro.io import write_json, write_jsonl
from seal_repro.stages._common import load_resolved, set_threads, stage_main
from seal_repro.stages._fewshot import SELF_EDITS, read_tasks, sampling_key

EVAL_SEED_OFFSET = 104_729  # shared with fewshot_rl, so an untrained policy writes these same self-edits


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--tasks", required=True, help="folder written by fewshot_tasks")
    p.add_argument("--out", required=True, help="folder for self_edits.jsonl")


def run(args):
    set_threads()
    spec = load_resolved(args.spec_dir)
    rows, key = [], None
    if "ttt_no_rl" in spec.conditions:
        tasks, seed = read_tasks(args.tasks, "eval"), spec.seed + EVAL_SEED_OFFSET
        model, tok = models.load(spec.model, Path(args.model))
        rows = sample_self_edits(model, tok, tasks, spec.self_edit.n_eval, spec, seed=seed)
        key = sampling_key(spec, args.model, tasks, seed)
    write_jsonl(Path(args.out) / SELF_EDITS, rows)
    write_json(Path(args.out) / "summary.json", {"rows": len(rows), "sampling_key": key})
    print(f"{len(rows)} self-edits -> {args.out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
