"""Stage seal_eval: the SEAL condition after one ReST-EM iteration — the iteration's policy writes
`self_edit.n` self-edits per evaluation passage, then the single-passage inner loop adapts *that policy model*
(as the reference's TTT server adapts the RL checkpoint) and lm-eval scores it, like adapt_eval.

Self-edits use the same sampling seeds as the self_edits stage, so iteration 0 of the curve (base_synthetic)
and every SEAL iteration differ only by the policy. Output: conditions/seal_iter<i>/ with self_edits.jsonl,
records.jsonl, rounds.jsonl, summary.json; an inactive iteration writes empty records and "skipped".
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from seal_repro.data.records import Passage
from seal_repro.io import read_json, read_jsonl, write_json, write_jsonl
from seal_repro.stages._common import load_resolved, set_threads, stage_main, write_skipped


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--policy", required=True, help="the iteration's folder written by rl_iter")
    p.add_argument("--out", required=True)
    p.add_argument("--no-memo", action="store_true", help="recompute every round even if memoized")


def run(args):
    out, policy = Path(args.out), Path(args.policy)
    info = read_json(policy / "summary.json")
    condition = f"seal_iter{info['iteration']}"
    if not info.get("active"):
        write_skipped(out, f"{condition}: beyond rl.iterations", {"condition": condition, "iteration": info["iteration"]},
                      ("self_edits.jsonl", "records.jsonl", "rounds.jsonl"))
        return
    set_threads()
    from seal_repro.engine import LoraEngine
    from seal_repro.executor import make_executor
    from seal_repro.knowledge.inner_loop import peak_memory_of, plan_rounds, run_rounds
    from seal_repro.knowledge.rl import load_policy, policy_fingerprint
    from seal_repro.lmeval_glue import QAScorer
    from seal_repro.memo import Memo
    from seal_repro.stages.adapt_eval import grade_records
    from seal_repro.stages.self_edits import write_self_edits

    spec = load_resolved(args.spec_dir)
    data, model_dir = Path(args.data), Path(args.model)
    executor = make_executor(spec, model_dir=model_dir, questions_file=data / "questions.jsonl",
                             policy_dir=policy / "policy")
    passages = {d["id"]: Passage.from_dict(d) for d in read_jsonl(data / "passages.jsonl")}
    model, tok = load_policy(spec, model_dir, policy / "policy")
    rows = write_self_edits(model, tok, spec, list(passages.values()))
    edits: dict[str, list[str]] = {}
    for row in rows:
        edits.setdefault(row["passage_id"], []).append(row["text"])
    rounds = [replace(r, condition=condition)
              for r in plan_rounds("base_synthetic", list(passages.values()), edits, spec)]
    engine = LoraEngine(model, tok, spec.inner_loop.lora)
    ev = spec.evaluation
    scorer = QAScorer(engine.base_model, tok, questions_file=data / "questions.jsonl", answer_prompt=ev.answer_prompt,
                      max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, chat_template=spec.model.chat_template)
    memo = Memo(enabled=not args.no_memo)
    results = run_rounds(rounds, engine, scorer.score, spec, policy_fingerprint(model_dir, policy / "policy"), memo,
                         desc=condition, executor=executor)
    records = grade_records(spec, results, passages)
    write_jsonl(out / "self_edits.jsonl", rows)
    write_jsonl(out / "rounds.jsonl", [{k: v for k, v in r.items() if k != "answers"} for r in results])
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", {
        "condition": condition, "iteration": info["iteration"], "skipped": False, "rounds": len(results),
        "questions": len(records), "memo_hits": memo.hits, "memo_misses": memo.misses,
        "lm_eval_task_version": scorer.version, **peak_memory_of(results),
    })
    print(f"{condition}: {len(results)} rounds ({memo.hits} memoized), {len(records)} answers -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
