"""Stage baselines: the baseline rows of the knowledge table, one process for all of them — base, passage,
passage + the base model's own self-edits (sampled here), passage + the teacher's self-edits. Inner-loop rounds
are scored by lm-eval (`seal_knowledge_qa`); see seal_repro/knowledge/baselines.py."""

from __future__ import annotations

from pathlib import Path

from seal_repro.knowledge.baselines import run_baselines
from seal_repro.lmeval.knowledge import LmEvalQA
from seal_repro.stages.helpers import add_common, load_resolved, memo_of, set_threads, stage_main


def add_args(p):
    add_common(p)
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--out", required=True, help="folder for self_edits.jsonl and one sub-folder per condition")


def run(args):
    set_threads()
    run_baselines(load_resolved(args.spec_dir), Path(args.model), Path(args.data), Path(args.out), LmEvalQA(),
                  memo_of(args))


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
