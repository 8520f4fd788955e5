"""Stage report: the knowledge results — metrics.json (flat, what `dvc metrics diff` reads), table.md beside the
paper, figures, per-question records and provenance. See seal_repro/report/knowledge.py."""

from __future__ import annotations

from pathlib import Path

from seal_repro.report.knowledge import write_report
from seal_repro.stages.helpers import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True, help="folder written by resolve_spec")
    p.add_argument("--baselines", required=True, help="folder written by the baselines stage")
    p.add_argument("--rl", default=None, help="folder written by the rl stage (for the SEAL rows)")
    p.add_argument("--cpt", default=None, help="folder written by the cpt stage")
    p.add_argument("--continual", default=None, help="folder written by the continual stage")
    p.add_argument("--calibration", default=None,
                   help="grader calibration JSON (seal-repro calibrate-grader) for the judge-equivalent column")
    p.add_argument("--out", required=True, help="results folder (metrics.json, table.md, accuracy.png, records.jsonl)")


def run(args):
    print(write_report(load_resolved(args.spec_dir), Path(args.baselines), Path(args.out),
                       rl=args.rl and Path(args.rl), cpt=args.cpt and Path(args.cpt),
                       continual=args.continual and Path(args.continual),
                       calibration=args.calibration and Path(args.calibration)))


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
