"""Stage report (few-shot): metrics.json (flat), table.md beside the paper, success.png, records.jsonl,
provenance.json. See seal_repro/report/fewshot.py."""

from __future__ import annotations

from pathlib import Path

from seal_repro.report.fewshot import write_report
from seal_repro.stages.helpers import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True, help="folder written by resolve_spec")
    p.add_argument("--baselines", required=True, help="folder written by the baselines stage")
    p.add_argument("--rl", required=True, help="folder written by the rl stage")
    p.add_argument("--out", required=True, help="results folder")


def run(args):
    print(write_report(load_resolved(args.spec_dir), Path(args.baselines), Path(args.rl), Path(args.out)))


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
