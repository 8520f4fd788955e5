"""The baseline rows of the knowledge table (paper Table 2, single passage), computed in one process.

Conditions: base (no adaptation) · passage (train on the passage) · base_synthetic (passage + the base model's
own self-edits, sampled here; with a separate `self_edit.writer`, the untrained writer's) · teacher_synthetic (passage + the teacher's self-edits, e.g. GPT-4.1's from a
file). One model load serves them all; rounds the memo lacks run on the spec's executor. With Ray the stage loads
a model only to sample the base model's self-edits with the hf backend (and drops it before the workers start):
the workers build their own kits, and the first round's adapter is trained on one of them and sent back as bytes.

Writes `self_edits.jsonl` and, per condition of the spec, `<condition>/{rounds,records}.jsonl`, `summary.json`
and `adapter/` (the first round's adapter, which the stock lm_eval CLI can score).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from seal_repro.data.records import Passage
from seal_repro.executor import free_device_memory, make_executor, remote
from seal_repro.io import read_jsonl, write_json, write_jsonl
from seal_repro.knowledge.grading import grade_records
from seal_repro.knowledge.inner_loop import Job, Kit, KitRecipe, ScorerFactory, peak_memory_of, plan_rounds, \
    run_rounds, save_first_adapter
from seal_repro.policy import load_policy, policy_fingerprint
from seal_repro.knowledge.self_edits import by_passage, write_self_edits
from seal_repro.knowledge.writer import Writer
from seal_repro.memo import Memo
from seal_repro.sampling import open_sampler


def read_passages(data_dir: Path, name: str = "passages.jsonl") -> list[Passage]:
    return [Passage.from_dict(d) for d in read_jsonl(Path(data_dir) / name)]


def write_condition(out: Path, condition: str, results: list[dict], records: list[dict], summary: dict) -> None:
    """One condition's folder: rounds (without their answers), graded records, summary."""
    write_jsonl(out / "rounds.jsonl", [{k: v for k, v in r.items() if k != "answers"} for r in results])
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "summary.json", {"condition": condition, "skipped": False, "rounds": len(results),
                                      "questions": len(records), **summary, **peak_memory_of(results)})


def sample_and_kit(spec, model_dir: Path, policy: Path | None, recipe: KitRecipe, sample, writer: Writer | None = None):
    """`sample(sampler)` with the spec's sampler over the writer's model with `policy` (None: its base; the writer
    is the adapted model unless the spec names one, seal_repro/knowledge/writer.py), then the stage's kit for its
    rounds: built on the model the sampling loaded (hf, when the writer is the adapted model) or a fresh load of
    the model `recipe` adapts, or None when the rounds go to workers that build their own (the model is then
    dropped, so the workers and a server have the GPU). Returns (what `sample` returned, the writer's tokenizer,
    the kit or None)."""
    writer = writer or Writer.of(spec, model_dir)
    with open_sampler(writer.spec, writer.model_dir, policy,
                      load=lambda: load_policy(writer.spec, writer.model_dir, policy)) as sampler:
        sampled = sample(sampler)
        held = sampler.take() if sampler.kind == "hf" and not writer.separate else None
        tok = sampler.tokenizer
    kit = None
    if not remote(spec.executor):
        model, kit_tok = held or load_policy(spec, Path(model_dir), writer.student_policy(policy))
        kit = recipe.build(model, kit_tok)
        if not writer.separate:
            tok = kit_tok
    held = None
    free_device_memory()
    return sampled, tok, kit


def scorer_version(kit: Kit, _item=None):
    """The lm-eval task version a kit scores with (run on a worker when the stage holds no kit)."""
    return kit.scorer.version


def kit_scorer_version(kit: Kit | None, executor):
    return kit.scorer.version if kit is not None else next(iter(dict(executor.run(scorer_version, [None])).values()))


def adapter_files(kit: Kit, job: Job) -> dict[str, bytes]:
    """A round's adapter trained on a worker's kit, as file contents (the worker may be on another node's disk)."""
    with tempfile.TemporaryDirectory() as tmp:
        save_first_adapter([job.round], kit, job.spec, Path(tmp) / "adapter")
        return {f.name: f.read_bytes() for f in (Path(tmp) / "adapter").iterdir() if f.is_file()}


def save_round_adapter(rounds, kit: Kit | None, spec, adapter: Path, executor) -> None:
    """rounds[0]'s adapter in `adapter` (for the stock lm_eval CLI): trained here on the stage's kit, or on a
    worker and written here whole (a temporary sibling renamed into place)."""
    if kit is not None or not rounds[0].sequences or (adapter / "adapter_config.json").exists():
        if kit is not None:
            save_first_adapter(rounds, kit, spec, adapter)
        return
    files = next(iter(dict(executor.run(adapter_files, [Job(rounds[0], spec)], describe=Job.describe)).values()))
    adapter.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=adapter.parent, prefix=f".{adapter.name}-"))
    try:
        for name, data in files.items():
            (tmp / name).write_bytes(data)
        if adapter.exists():
            shutil.rmtree(adapter)
        os.rename(tmp, adapter)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_baselines(spec, model_dir: Path, data_dir: Path, out: Path, scorer: ScorerFactory, memo: Memo) -> dict:
    """Every baseline condition the spec lists; returns {condition: summary}."""
    passages = read_passages(data_dir)
    by_id = {p.id: p for p in passages}
    questions = Path(data_dir) / "questions.jsonl"
    recipe = KitRecipe.of(spec, model_dir, questions, scorer)
    fingerprint = policy_fingerprint(model_dir, None)
    writer = Writer.of(spec, model_dir)

    def sample(sampler):  # sampled before the kit wraps the model in LoRA layers
        if "base_synthetic" not in spec.conditions:
            return []
        return write_self_edits(sampler, None, writer.spec, passages, memo=memo,
                                model_fingerprint=writer.fingerprint(None))

    rows, _, kit = sample_and_kit(spec, model_dir, None, recipe, sample, writer)
    write_jsonl(out / "self_edits.jsonl", rows)
    executor = make_executor(spec.executor, recipe, spec.model.device)
    summaries = {}
    with executor:
        for condition in spec.conditions:
            folder = out / condition
            rounds = plan_rounds(condition, passages, by_passage(rows), spec)
            hits, misses = memo.hits, memo.misses
            adapter = folder / "adapter" if condition != "base" else None
            results = run_rounds(rounds, kit, spec, fingerprint, memo, desc=condition, executor=executor,
                                 first_adapter_dir=adapter, code=recipe.code)
            if adapter is not None and rounds:
                save_round_adapter(rounds, kit, spec, adapter, executor)
                write_json(adapter / "round.json", {"passage_id": rounds[0].passage.id, "condition": condition})
            records = grade_records(spec, results, by_id)
            summaries[condition] = {"memo_hits": memo.hits - hits, "memo_misses": memo.misses - misses,
                                    "lm_eval_task_version": kit_scorer_version(kit, executor)}
            write_condition(folder, condition, results, records, summaries[condition])
            print(f"{condition}: {len(results)} rounds ({summaries[condition]['memo_hits']} memoized), "
                  f"{len(records)} answers -> {folder}")
    return summaries
