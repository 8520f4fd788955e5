"""Stage cpt: continued pretraining on many passages at once (paper Table 2, the n = 200 column): per cpt
condition, one model trained on the corpus of all `cpt.n_passages` evaluation passages (LoRA: paper v1; full
fine-tuning: paper v2), then asked all of their questions. Writes records.jsonl and summary.json."""

from __future__ import annotations

from pathlib import Path

from seal_repro.knowledge.cpt import run_cpt
from seal_repro.lmeval.knowledge import LmEvalQA
from seal_repro.stages.helpers import add_common, load_resolved, memo_of, set_threads, stage_main, write_skipped


def add_args(p):
    add_common(p)
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--baselines", required=True, help="folder written by baselines (the base model's self-edits)")
    p.add_argument("--rl", required=True, help="folder written by rl (the final SEAL policy's self-edits)")
    p.add_argument("--out", required=True)


def run(args):
    spec, out = load_resolved(args.spec_dir), Path(args.out)
    if spec.cpt is None:
        write_skipped(out, "cpt: no cpt section in the spec")
        return
    set_threads()
    rl = Path(args.rl)
    seal = rl / f"seal_iter{spec.rl.iterations}" / "self_edits.jsonl" if spec.rl else None
    policy = rl / f"iter{spec.rl.iterations}" / "policy" if spec.rl else None
    run_cpt(spec, Path(args.model), Path(args.data), Path(args.baselines) / "self_edits.jsonl", seal, out,
            LmEvalQA(), memo_of(args), seal_policy=policy)


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
