"""Stage prepare_data: load or generate the evaluation passages; write passages + questions (lm-eval's input)."""

from __future__ import annotations

from pathlib import Path

from seal_repro.data.loaders import load_passages
from seal_repro.io import write_jsonl
from seal_repro.stages._common import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--out", required=True, help="folder for passages.jsonl and questions.jsonl")


def run(args):
    spec = load_resolved(args.spec_dir)
    passages = load_passages(spec.data, seed=spec.seed)
    out = Path(args.out)
    write_jsonl(out / "passages.jsonl", [p.to_dict() for p in passages])
    write_jsonl(out / "questions.jsonl", [
        {"id": q.id, "passage_id": p.id, "question": q.question, "answer": q.answer, "golds": list(q.golds)}
        for p in passages for q in p.questions
    ])
    print(f"{len(passages)} passages, {sum(len(p.questions) for p in passages)} questions -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
