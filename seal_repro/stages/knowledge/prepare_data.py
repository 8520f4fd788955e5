"""Stage prepare_data: the evaluation passages and questions (lm-eval's input) and the ReST-EM training passages,
checked to be disjoint. Every data file a spec names is read and checked here, before any model loads."""

from __future__ import annotations

from pathlib import Path

from seal_repro.knowledge.prepare import write_data
from seal_repro.stages.helpers import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True, help="folder written by resolve_spec")
    p.add_argument("--out", required=True, help="folder for {,rl_}passages.jsonl and {,rl_}questions.jsonl")


def run(args):
    evaluation, train = write_data(load_resolved(args.spec_dir), Path(args.out))
    print(f"{len(evaluation)} evaluation passages ({sum(len(p.questions) for p in evaluation)} questions), "
          f"{len(train)} ReST-EM training passages -> {args.out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
