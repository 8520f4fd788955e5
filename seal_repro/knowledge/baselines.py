"""The baseline rows of the knowledge table (paper Table 2, single passage), computed in one process.

Conditions: base (no adaptation) · passage (train on the passage) · base_synthetic (passage + the base model's
own self-edits, sampled here) · teacher_synthetic (passage + the teacher's self-edits, e.g. GPT-4.1's from a
file). One model load serves them all; rounds the memo lacks run on the spec's executor.

Writes `self_edits.jsonl` and, per condition of the spec, `<condition>/{rounds,records}.jsonl`, `summary.json`
and `adapter/` (the first round's adapter, which the stock lm_eval CLI can score).
"""

from __future__ import annotations

from pathlib import Path

from seal_repro.data.records import Passage
from seal_repro.executor import make_executor
from seal_repro.io import read_jsonl, write_json, write_jsonl
from seal_repro.knowledge.grading import grade_records
from seal_repro.knowledge.inner_loop import KitRecipe, ScorerFactory, peak_memory_of, plan_rounds, run_rounds, \
    save_first_adapter
from seal_repro.policy import load_policy, policy_fingerprint
from seal_repro.knowledge.self_edits import by_passage, write_self_edits
from seal_repro.memo import Memo


def read_passages(data_dir: Path, name: str = "passages.jsonl") -> list[Passage]:
    return [Passage.from_dict(d) for d in read_jsonl(Path(data_dir) / name)]


def write_condition(out: Path, condition: str, results: list[dict], records: list[dict], summary: dict) -> None:
    """One condition's folder: rounds (without their answers), graded records, summary."""
    write_jsonl(out / "rounds.jsonl", [{k: v for k, v in r.items() if k != "answers"} for r in results])
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", {"condition": condition, "skipped": False, "rounds": len(results),
                                      "questions": len(records), **summary, **peak_memory_of(results)})


def run_baselines(spec, model_dir: Path, data_dir: Path, out: Path, scorer: ScorerFactory, memo: Memo) -> dict:
    """Every baseline condition the spec lists; returns {condition: summary}."""
    passages = read_passages(data_dir)
    by_id = {p.id: p for p in passages}
    questions = Path(data_dir) / "questions.jsonl"
    recipe = KitRecipe.of(spec, model_dir, questions, scorer)
    fingerprint = policy_fingerprint(model_dir, None)
    model, tok = load_policy(spec, model_dir, None)
    rows = []
    if "base_synthetic" in spec.conditions:  # sampled before the kit wraps the model in LoRA layers
        rows = write_self_edits(model, tok, spec, passages, memo=memo, model_fingerprint=fingerprint)
    write_jsonl(out / "self_edits.jsonl", rows)
    kit = recipe.build(model, tok)
    executor = make_executor(spec.executor, recipe, spec.model.device)
    summaries = {}
    with executor:
        for condition in spec.conditions:
            folder = out / condition
            rounds = plan_rounds(condition, passages, by_passage(rows), spec)
            hits, misses = memo.hits, memo.misses
            adapter = folder / "adapter" if condition != "base" else None
            results = run_rounds(rounds, kit, spec, fingerprint, memo, desc=condition, executor=executor,
                                 first_adapter_dir=adapter)
            if adapter is not None and rounds:
                save_first_adapter(rounds, kit, spec, adapter)
                write_json(adapter / "round.json", {"passage_id": rounds[0].passage.id, "condition": condition})
            records = grade_records(spec, results, by_id)
            summaries[condition] = {"memo_hits": memo.hits - hits, "memo_misses": memo.misses - misses,
                                    "lm_eval_task_version": kit.scorer.version}
            write_condition(folder, condition, results, records, summaries[condition])
            print(f"{condition}: {len(results)} rounds ({summaries[condition]['memo_hits']} memoized), "
                  f"{len(records)} answers -> {folder}")
    return summaries
