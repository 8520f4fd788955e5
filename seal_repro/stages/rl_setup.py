"""Stage rl_setup: the RL training passages, and one small plan file per possible ReST-EM iteration.

`iter<i>.json` holds what iteration i depends on: whether it runs (i <= rl.iterations) and the rl settings
*without* the iteration count. Each rl_iter stage depends on its own file only, so raising rl.iterations from
2 to 3 leaves iterations 1 and 2 untouched in dvc.lock and runs just the new one. iter0/ is the starting
policy: the base model (no adapter).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from seal_repro.data.loaders import load_passages
from seal_repro.data.records import Passage
from seal_repro.errors import DataError
from seal_repro.io import read_jsonl, write_json, write_jsonl
from seal_repro.spec.rl import MAX_RL_ITERATIONS
from seal_repro.stages._common import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--data", required=True, help="folder written by prepare_data (checked for overlap)")
    p.add_argument("--out", required=True, help="folder for passages.jsonl, questions.jsonl, iter<i>.json")
    p.add_argument("--iter0", required=True, help="folder standing for the starting policy (the base model)")


def _norm(text: str) -> str:
    return " ".join(text.split())


def check_disjoint(train: list[Passage], evaluation: list[Passage]) -> None:
    ids = {p.id for p in evaluation}
    contexts = {_norm(p.context) for p in evaluation}
    both = [p for p in train if p.id in ids or _norm(p.context) in contexts]
    if both:
        shown = ", ".join(f"{p.id} ({p.title!r})" for p in both[:5]) + (" …" if len(both) > 5 else "")
        raise DataError(f"rl.train_data: {len(both)} training passage(s) are also evaluation passages: {shown}")


def run(args):
    spec = load_resolved(args.spec_dir)
    out, rl = Path(args.out), spec.rl
    passages: list[Passage] = []
    if rl is not None:
        passages = load_passages(rl.train_data, seed=spec.seed)
        check_disjoint(passages, [Passage.from_dict(d) for d in read_jsonl(Path(args.data) / "passages.jsonl")])
    write_jsonl(out / "passages.jsonl", [p.to_dict() for p in passages])
    write_jsonl(out / "questions.jsonl", [
        {"id": q.id, "passage_id": p.id, "question": q.question, "answer": q.answer, "golds": list(q.golds)}
        for p in passages for q in p.questions
    ])
    settings = None if rl is None else rl.model_dump(mode="json", exclude={"iterations"})
    for i in range(1, MAX_RL_ITERATIONS + 1):
        active = rl is not None and i <= rl.iterations
        write_json(out / f"iter{i}.json", {"iteration": i, "active": active, **({"rl": settings} if active else {})})
    iter0 = Path(args.iter0)
    if iter0.exists():
        shutil.rmtree(iter0)
    write_json(iter0 / "summary.json", {"iteration": 0, "active": True, "policy": None})
    n = rl.iterations if rl else 0
    print(f"rl: {len(passages)} training passages, {n} iteration(s) planned -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
