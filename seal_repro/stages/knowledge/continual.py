"""Stage continual: sequential self-edits into one model (paper §Limitations, catastrophic forgetting). For each of
`continual.sequences` random orders of `continual.n_passages` evaluation passages, the model (the base, or the
final SEAL policy with `start: seal`) edits itself passage by passage; after each edit every passage seen so far
is scored. Writes summary.json (retention matrix, forgetting), records.jsonl and self_edits.jsonl."""

from __future__ import annotations

from pathlib import Path

from seal_repro.knowledge.continual import run_continual
from seal_repro.lmeval.knowledge import LmEvalQA
from seal_repro.stages.helpers import add_common, load_resolved, memo_of, set_threads, stage_main, write_skipped


def add_args(p):
    add_common(p)
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--rl", required=True, help="folder written by rl (for continual.start: seal)")
    p.add_argument("--out", required=True)


def run(args):
    spec, out = load_resolved(args.spec_dir), Path(args.out)
    if spec.continual is None:
        write_skipped(out, "continual: no continual section in the spec", jsonl=("records.jsonl", "self_edits.jsonl"))
        return
    set_threads()
    policy = Path(args.rl) / f"iter{spec.rl.iterations}" / "policy" if spec.continual.start == "seal" else None
    run_continual(spec, Path(args.model), Path(args.data), policy, out, LmEvalQA(), memo_of(args))


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
