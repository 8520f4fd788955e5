"""Stage self_edits: the base model writes `self_edit.n` self-edits for every evaluation passage."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from seal_repro import models
from seal_repro.data.records import Passage
from seal_repro.engine import generate, render_prompt
from seal_repro.io import read_jsonl, write_jsonl
from seal_repro.knowledge.prompts import self_edit_prompt, uses_chat_template
from seal_repro.stages._common import load_resolved, set_threads, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--out", required=True, help="folder for self_edits.jsonl")


def write_self_edits(model, tok, spec, passages: list[Passage], seed_offset: int = 0) -> list[dict]:
    """n sampled self-edits per passage, batched; row order is (passage, index)."""
    se = spec.self_edit
    prompts = [render_prompt(tok, self_edit_prompt(se, p.title, p.context), uses_chat_template(spec)) for p in passages]
    rows = []
    for i in tqdm(range(se.n), desc="self-edits", unit="sample", dynamic_ncols=True):
        texts = generate(
            model, tok, prompts, max_new_tokens=se.sampling.max_new_tokens, temperature=se.sampling.temperature,
            top_p=se.sampling.top_p, batch_size=spec.evaluation.batch_size, seed=spec.seed + seed_offset + 1000 * i,
        )
        rows += [{"passage_id": p.id, "index": i, "text": t.strip()} for p, t in zip(passages, texts)]
    rows.sort(key=lambda r: (r["passage_id"], r["index"]))
    return rows


def run(args):
    set_threads()
    spec = load_resolved(args.spec_dir)
    passages = [Passage.from_dict(d) for d in read_jsonl(Path(args.data) / "passages.jsonl")]
    rows = []
    if "base_synthetic" in spec.conditions:
        model, tok = models.load(spec.model, Path(args.model))
        rows = write_self_edits(model, tok, spec, passages)
    write_jsonl(Path(args.out) / "self_edits.jsonl", rows)
    print(f"{len(rows)} self-edits -> {args.out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
