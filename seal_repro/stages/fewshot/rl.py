"""Stage rl (few-shot): ReST-EM on the training tasks, then the SEAL condition — the trained policy's self-edits
for the evaluation tasks, each -> TTT -> solved? Writes policy/ (a PEFT adapter), records.jsonl (the rewarded
training rounds), self_edits.jsonl, seal/ and summary.json. Without seal in the conditions: a marker."""

from __future__ import annotations

from pathlib import Path

from seal_repro.fewshot.rl import run_rl
from seal_repro.lmeval.arc import LmEvalArc
from seal_repro.stages.helpers import add_common, load_resolved, memo_of, set_threads, stage_main, write_skipped


def add_args(p):
    add_common(p)
    p.add_argument("--tasks", required=True, help="folder written by the tasks stage")
    p.add_argument("--out", required=True, help="folder for policy/, seal/, records.jsonl, self_edits.jsonl")


def run(args):
    spec, out = load_resolved(args.spec_dir), Path(args.out)
    if "seal" not in spec.conditions:
        write_skipped(out, "seal: not in spec.conditions", jsonl=("records.jsonl", "self_edits.jsonl"))
        return
    set_threads()
    run_rl(spec, Path(args.model), Path(args.tasks), out, LmEvalArc(), memo_of(args))


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
