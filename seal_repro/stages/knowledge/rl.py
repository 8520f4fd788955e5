"""Stage rl: SEAL — every ReST-EM iteration the spec asks for (`rl.iterations`, no cap), each followed by the SEAL
condition (the iteration's policy writes the self-edits and is the model the inner loop adapts).

Writes iter<i>/{policy/, samples.jsonl, records.jsonl, summary.json} and seal_iter<i>/{self_edits,records,
rounds}.jsonl + summary.json. Resumable: samples, rounds and trained policies are memoized by content, so an
interrupted run, or one asking for more iterations, recomputes only what is new. Without an rl section: a marker.
"""

from __future__ import annotations

from pathlib import Path

from seal_repro.io import write_json
from seal_repro.knowledge.rl import KnowledgeRL
from seal_repro.lmeval.knowledge import LmEvalQA
from seal_repro.stages.helpers import add_common, load_resolved, memo_of, set_threads, stage_main, write_skipped


def add_args(p):
    add_common(p)
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--out", required=True, help="folder for iter<i>/ and seal_iter<i>/")


def run(args):
    spec, out = load_resolved(args.spec_dir), Path(args.out)
    if spec.rl is None:
        write_skipped(out, "rl: no rl section in the spec", jsonl=())
        return
    set_threads()
    summaries = KnowledgeRL(spec, Path(args.model), Path(args.data), out, LmEvalQA(), memo_of(args)).run()
    write_json(out / "summary.json", {"skipped": False, "iterations": len(summaries)})


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
