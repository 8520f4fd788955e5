"""The few-shot ARC table's conditions on the evaluation tasks, one record per (task, self-edit):

icl (no adaptation: the base model answers from the demonstrations in its prompt) · ttt_no_rl (the base model's
own self-edits, each -> TTT -> solved?) · seal (self-edits of the RL-trained policy) · oracle_ttt (the spec's fixed
`oracle` self-edit). `run_baselines` computes every condition but seal in one process (seal needs the RL phase,
seal_repro/fewshot/rl.py, which calls `evaluate` for it).

Rounds run on the spec's executor: the stage's process (or forked copies of it on a CPU), or Ray workers that
build their own kits from the recipe — the stage then loads a model only to sample with the hf backend, and drops
it before the workers start.
"""

from __future__ import annotations

from pathlib import Path

from seal_repro import models
from seal_repro.executor import free_device_memory, local_executor, make_executor, remote
from seal_repro.fewshot.inner_loop import Kit, KitRecipe, PredictorFactory, plan_rounds, predictor_version, run_rounds
from seal_repro.fewshot.self_edits import EVAL_SEED_OFFSET, SELF_EDITS, read_self_edits, sample_self_edits
from seal_repro.fewshot.tasks import Task, read_tasks
from seal_repro.io import write_json, write_jsonl
from seal_repro.memo import Memo, fingerprint_model_dir
from seal_repro.sampling import open_sampler

NEEDS_SELF_EDITS = ("ttt_no_rl", "seal")


def kit_version(kit: Kit | None, executor):
    """The predictor's lm-eval task version: the stage's kit's, or a worker's."""
    if kit is not None:
        return kit.predict.version
    return next(iter(dict(executor.run(predictor_version, [None])).values()))


def evaluate(condition: str, tasks: list[Task], edits: dict[str, list[str]], kit: Kit | None, spec, fingerprint: str,
             memo: Memo, out: Path, executor=None, code: str | None = None) -> dict:
    """One condition's rounds on `kit` (None: on the workers of `executor`, a Ray one, with the recipe's `code`);
    writes out/{records.jsonl, summary.json}; returns the summary."""
    hits, misses = memo.hits, memo.misses
    executor = executor if executor is not None else local_executor(spec.executor, spec.model.device)
    records = run_rounds(plan_rounds(condition, tasks, edits, spec), kit, spec, fingerprint, memo, desc=condition,
                         executor=executor, code=code)
    summary = {
        "condition": condition, "skipped": False, "rounds": len(records),
        "invalid_self_edits": sum(not r["valid"] for r in records), "solved": sum(r["solved"] for r in records),
        "memo_hits": memo.hits - hits, "memo_misses": memo.misses - misses,
        "lm_eval_task_version": kit_version(kit, executor),
    }
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", summary)
    print(f"{condition}: {len(records)} rounds, {summary['solved']} solved ({summary['memo_hits']} memoized) -> {out}")
    return summary


def run_baselines(spec, model_dir: Path, tasks_dir: Path, out: Path, predictor: PredictorFactory, memo: Memo) -> dict:
    """icl, ttt_no_rl (its self-edits sampled here, into out/self_edits.jsonl) and oracle_ttt, as the spec lists
    them, each into out/<condition>/; returns {condition: summary}."""
    tasks = read_tasks(tasks_dir, "eval")
    fingerprint = fingerprint_model_dir(model_dir)
    recipe = KitRecipe.of(spec, model_dir, Path(tasks_dir) / "prompts.jsonl", predictor)
    rows, held = [], None
    with open_sampler(spec, Path(model_dir), None, load=lambda: models.load(spec.model, Path(model_dir))) as sampler:
        if "ttt_no_rl" in spec.conditions:  # sampled before the kit wraps the model in LoRA layers
            rows = sample_self_edits(sampler, None, tasks, spec.self_edit.n_eval, spec,
                                     seed=spec.seed + EVAL_SEED_OFFSET, memo=memo, model_fingerprint=fingerprint)
        held = sampler.take() if sampler.kind == "hf" else None
    write_jsonl(out / SELF_EDITS, rows)
    kit = None
    if not remote(spec.executor):
        kit = recipe.build(*(held or models.load(spec.model, Path(model_dir))))
    held = None
    free_device_memory()
    summaries = {}
    with make_executor(spec.executor, recipe, spec.model.device) as executor:
        for condition in spec.conditions:
            if condition == "seal":
                continue
            edits = read_self_edits(out) if condition in NEEDS_SELF_EDITS else {}
            summaries[condition] = evaluate(condition, tasks, edits, kit, spec, fingerprint, memo, out / condition,
                                            executor=executor, code=recipe.code)
    return summaries
