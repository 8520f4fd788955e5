"""Stage adapt_eval: one condition of the knowledge table — adapt per passage (inner loop), score with lm-eval.

Conditions: base (no adaptation) · passage (train on the passage) · base_synthetic (passage + the base
model's self-edits) · teacher_synthetic (passage + the teacher's self-edits, e.g. GPT-4.1's from a file).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from seal_repro import models
from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainConfig
from seal_repro.executor import make_executor
from seal_repro.graders import GradeItem, grade
from seal_repro.io import read_jsonl, write_json, write_jsonl
from seal_repro.knowledge.inner_loop import compute_round, peak_memory_of, plan_rounds, run_rounds
from seal_repro.lmeval_glue import QAScorer
from seal_repro.memo import Memo, fingerprint_model_dir
from seal_repro.spec.experiment import ALL_CONDITIONS
from seal_repro.stages._common import load_resolved, set_threads, stage_main, write_skipped


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--model", required=True, help="folder written by prepare_model")
    p.add_argument("--data", required=True, help="folder written by prepare_data")
    p.add_argument("--self-edits", required=True, help="folder written by self_edits")
    p.add_argument("--condition", required=True, choices=ALL_CONDITIONS)
    p.add_argument("--out", required=True, help="folder for records.jsonl, rounds.jsonl, summary.json")
    p.add_argument("--no-memo", action="store_true", help="recompute every round even if memoized")


def grade_records(spec, rounds: list[dict], passages: dict[str, Passage]) -> list[dict]:
    """Flatten rounds into one record per answered question, graded by the spec's grader."""
    flat = []
    for rnd in rounds:
        p = passages[rnd["passage_id"]]
        qs = {q.id: q for q in p.questions}
        for a in rnd["answers"]:
            q = qs[a["question_id"]]
            flat.append({
                "condition": rnd["condition"], "passage_id": p.id, "self_edit_index": rnd["self_edit_index"],
                "repeat": rnd["repeat"], "question_id": q.id, "question": q.question, "golds": list(q.golds),
                "prediction": a["prediction"], "contains": a["contains"], "exact_match": a["exact_match"], "f1": a["f1"],
            })
    results = grade(spec.evaluation.grader, [GradeItem(r["question"], tuple(r["golds"]), r["prediction"]) for r in flat])
    for rec, res in zip(flat, results):
        rec["correct"] = res.correct  # None = ungraded (judge failure), never counted as wrong
        rec["grade_detail"] = res.detail
    if spec.evaluation.grader.kind == "judge":
        from seal_repro.judge import check_ungraded

        check_ungraded(results, spec.evaluation.grader.max_ungraded_rate)
    return flat


def run(args):
    set_threads()
    spec = load_resolved(args.spec_dir)
    out = Path(args.out)
    if args.condition not in spec.conditions:
        write_skipped(out, f"{args.condition}: not in spec.conditions", {"condition": args.condition},
                      ("records.jsonl", "rounds.jsonl"))
        return
    data = Path(args.data)
    passages = {d["id"]: Passage.from_dict(d) for d in read_jsonl(data / "passages.jsonl")}
    edits: dict[str, list[str]] = defaultdict(list)
    for row in read_jsonl(Path(args.self_edits) / "self_edits.jsonl"):
        edits[row["passage_id"]].append(row["text"])
    rounds = plan_rounds(args.condition, list(passages.values()), edits, spec)

    model_dir = Path(args.model)
    executor = make_executor(spec, model_dir=model_dir, questions_file=data / "questions.jsonl")
    model, tok = models.load(spec.model, model_dir)
    engine = LoraEngine(model, tok, spec.inner_loop.lora)
    ev = spec.evaluation
    scorer = QAScorer(engine.base_model, tok, questions_file=data / "questions.jsonl", answer_prompt=ev.answer_prompt,
                      max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size, chat_template=spec.model.chat_template)
    memo = Memo(enabled=not args.no_memo)
    adapter = out / "adapter"  # the first round's, so the stock `lm_eval` CLI can score it from disk (every
    # round's would cost ~20 MB each); saved as the round trains, else re-trained below (seeded: the same weights)
    results = run_rounds(rounds, engine, scorer.score, spec, fingerprint_model_dir(model_dir), memo, desc=args.condition,
                         executor=executor, first_adapter_dir=adapter if args.condition != "base" else None)
    if args.condition != "base" and rounds:
        if not (adapter / "adapter_config.json").exists():  # round 0 was memoized, or ran on a Ray worker
            compute_round(rounds[0], engine, lambda ids: [], TrainConfig.from_inner_loop(spec.inner_loop), spec.seed,
                          adapter_dir=adapter)
        write_json(out / "adapter" / "round.json", {"passage_id": rounds[0].passage.id, "condition": args.condition})
    records = grade_records(spec, results, passages)
    write_jsonl(out / "rounds.jsonl", [{k: v for k, v in r.items() if k != "answers"} for r in results])
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", {
        "condition": args.condition, "skipped": False, "rounds": len(results), "questions": len(records),
        "memo_hits": memo.hits, "memo_misses": memo.misses, "lm_eval_task_version": scorer.version,
        **peak_memory_of(results),
    })
    print(f"{args.condition}: {len(results)} rounds ({memo.hits} memoized), {len(records)} answers -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
