"""Stage fewshot_eval: one condition of the few-shot ARC table on the evaluation tasks.

Conditions: icl (no adaptation: the base model answers from the demonstrations in its prompt) ·
ttt_no_rl (the base model's own self-edits, each -> TTT -> solved?) · seal (self-edits of the RL-trained
policy) · oracle_ttt (the spec's fixed `oracle` self-edit). One record per (task, self-edit).
"""

from __future__ import annotations

from pathlib import Path

from seal_repro import models
from seal_repro.engine import LoraEngine
from seal_repro.executor import local_executor
from seal_repro.fewshot.inner_loop import plan_rounds, run_rounds
from seal_repro.io import write_json, write_jsonl
from seal_repro.memo import Memo, fingerprint_model_dir
from seal_repro.spec.fewshot import ALL_FEWSHOT_CONDITIONS
from seal_repro.stages._common import load_resolved, set_threads, stage_main, write_skipped
from seal_repro.stages._fewshot import PROMPTS, ArcPredictor, read_self_edits, read_tasks

NEEDS_SELF_EDITS = ("ttt_no_rl", "seal")


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--tasks", required=True, help="folder written by fewshot_tasks")
    p.add_argument("--self-edits", required=True,
                   help="folder with self_edits.jsonl (fewshot_self_edits for ttt_no_rl, fewshot_rl for seal); "
                        "read only by those two conditions")
    p.add_argument("--condition", required=True, choices=ALL_FEWSHOT_CONDITIONS)
    p.add_argument("--out", required=True, help="folder for records.jsonl and summary.json")
    p.add_argument("--no-memo", action="store_true", help="recompute every round even if memoized")


def run(args):
    set_threads()
    spec = load_resolved(args.spec_dir)
    out = Path(args.out)
    if args.condition not in spec.conditions:
        write_skipped(out, f"{args.condition}: not in spec.conditions", {"condition": args.condition})
        return
    tasks = read_tasks(args.tasks, "eval")
    edits = read_self_edits(args.self_edits) if args.condition in NEEDS_SELF_EDITS else {}
    rounds = plan_rounds(args.condition, tasks, edits, spec)
    model_dir = Path(args.model)
    model, tok = models.load(spec.model, model_dir)
    engine = LoraEngine(model, tok, spec.inner_loop.lora)
    ev = spec.evaluation
    predictor = ArcPredictor(engine.base_model, tok, prompts_file=Path(args.tasks) / PROMPTS,
                             max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size,
                             chat_template=spec.model.chat_template)
    memo = Memo(enabled=not args.no_memo)
    records = run_rounds(rounds, engine, predictor, spec, fingerprint_model_dir(model_dir), memo, desc=args.condition,
                         executor=local_executor(spec))
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", {
        "condition": args.condition, "skipped": False, "rounds": len(records),
        "invalid_self_edits": sum(not r["valid"] for r in records), "solved": sum(r["solved"] for r in records),
        "memo_hits": memo.hits, "memo_misses": memo.misses, "lm_eval_task_version": predictor.version,
    })
    print(f"{args.condition}: {len(records)} rounds, {sum(r['solved'] for r in records)} solved "
          f"({memo.hits} memoized) -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
