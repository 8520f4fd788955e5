"""The single-passage inner loop: for each (passage, self-edit, repeat) train a fresh LoRA and answer τ.

`score_fn(question_ids) -> list[dict]` is injected by the caller (the stage passes lm-eval glue), which
keeps this module free of lm-eval; `memo` makes every round computed once.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence


from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainConfig, TrainExample
from seal_repro.errors import AdapterNotApplied
from seal_repro.executor import LocalExecutor
from seal_repro.knowledge.sequences import training_sequences
from seal_repro.memo import Memo, key_of, memoized
from seal_repro.memory import PeakMemory
from seal_repro.spec.experiment import ExperimentSpec

ScoreFn = Callable[[list[str]], list[dict]]


@dataclass(frozen=True)
class Round:
    condition: str
    passage: Passage
    self_edit_index: int
    self_edit: str | None  # None: no self-edit (base, or train on the passage alone)
    repeat: int
    sequences: tuple[str, ...]  # empty: no adaptation (the base condition)

    def seed(self, spec_seed: int) -> int:
        # The reference seeds rounds from the wall clock; we derive each round's seed from the spec
        # seed and the round's content, so a run is reproducible and identical rounds share a seed.
        blob = "\x1f".join([str(spec_seed), self.passage.id, "\x1e".join(self.sequences), str(self.repeat)])
        return int.from_bytes(hashlib.sha256(blob.encode()).digest()[:4], "little")


def plan_rounds(condition: str, passages: Sequence[Passage], self_edits: dict[str, list[str]],
                spec: ExperimentSpec) -> list[Round]:
    rounds = []
    repeats = 1 if condition == "base" else spec.evaluation.repeats
    for p in passages:
        if condition == "base":
            edits: list[str | None] = [None]
        elif condition == "passage":
            edits = [None]
        elif condition == "base_synthetic":
            edits = list(self_edits.get(p.id, []))
        elif condition == "teacher_synthetic":
            edits = list(p.teacher_self_edits)
        else:
            raise ValueError(f"unknown condition {condition!r}")
        for i, edit in enumerate(edits):
            seqs = () if condition == "base" else tuple(training_sequences(edit, p.title, p.context, spec.inner_loop))
            for r in range(repeats):
                rounds.append(Round(condition, p, i, edit, r, seqs))
    return rounds


def round_key(rnd: Round, spec: ExperimentSpec, model_fingerprint: str) -> str:
    return key_of({
        "model": model_fingerprint, "dtype": spec.model.dtype, "chat_template": spec.model.chat_template,
        "sequences": list(rnd.sequences), "lora": spec.inner_loop.lora.model_dump(mode="json") if rnd.sequences else None,
        "train": TrainConfig.from_inner_loop(spec.inner_loop).__dict__ if rnd.sequences else None,
        "seed": rnd.seed(spec.seed) if rnd.sequences else None,
        "questions": [(q.id, q.question) for q in rnd.passage.questions],
        "answer_prompt": spec.evaluation.answer_prompt, "max_new_tokens": spec.evaluation.max_new_tokens,
    })


def run_rounds(rounds: Sequence[Round], engine: LoraEngine, score_fn: ScoreFn, spec: ExperimentSpec,
               model_fingerprint: str, memo: Memo, desc: str = "inner loop", executor=None,
               first_adapter_dir: Path | None = None) -> list[dict]:
    """Run (or fetch from the memo) every round; return one record per round with its question records.

    `executor` (seal_repro.executor; default: local, on `engine` and `score_fn`) computes the rounds the memo
    lacks, each once; every result is memoized the moment it arrives and the records keep the rounds' order.
    `first_adapter_dir`: where rounds[0]'s adapter is saved if this call computes it (a local executor does).
    """
    cfg = TrainConfig.from_inner_loop(spec.inner_loop)

    def compute(todo: list[int]):
        # rounds[0]'s adapter is saved only where this call trains it (not when it comes from the memo)
        adapter_dir = first_adapter_dir if todo[:1] == [0] else None
        return (executor or LocalExecutor()).compute([rounds[i] for i in todo], engine, score_fn, cfg, spec.seed,
                                                     first_adapter_dir=adapter_dir)

    results = memoized(memo, [round_key(rnd, spec, model_fingerprint) for rnd in rounds], compute, desc)
    out = []
    for rnd, result in zip(rounds, results):
        out.append({
            "condition": rnd.condition, "passage_id": rnd.passage.id, "self_edit_index": rnd.self_edit_index,
            "repeat": rnd.repeat, "self_edit": rnd.self_edit, "n_sequences": len(rnd.sequences), **result,
        })
    return out


def peak_memory_of(results: Sequence[dict]) -> dict:
    """The largest per-round peak memory among `results` (stage summaries report it; rounds from an older memo
    entry without a measurement are left out)."""
    measured = [r["memory"] for r in results if r.get("memory")]
    return {
        "round_peak_rss_mb": max((m["peak_rss_mb"] for m in measured), default=None),
        "round_peak_gpu_mb": max((m["peak_gpu_mb"] for m in measured), default=None),
    }


def compute_round(rnd: Round, engine: LoraEngine, score_fn: ScoreFn, cfg: TrainConfig, spec_seed: int,
                  adapter_dir: Path | None = None) -> dict:
    """Reset the adapter, train it on the round's sequences, check it took, answer the passage's questions;
    `adapter_dir`: also save the trained adapter there (for the stock lm_eval CLI). The result's `memory` is the
    round's peak memory (seal_repro/memory.py): resident set of the process computing it, GPU allocations."""
    seed = rnd.seed(spec_seed)
    engine.reset(seed)
    stats = None
    with PeakMemory(engine.device) as peak:
        if rnd.sequences:
            stats = engine.train([TrainExample(s) for s in rnd.sequences], cfg, seed=seed)
            if not engine.logits_differ_from_base():
                raise AdapterNotApplied(
                    f"adapter for passage {rnd.passage.id} ({rnd.condition}) left the model's logits unchanged: "
                    "training had no effect (check inner_loop.lr / inner_loop.lora.target_modules)"
                )
            if adapter_dir is not None:
                engine.save_adapter(adapter_dir)
        answers = score_fn([q.id for q in rnd.passage.questions])
    return {
        "memory": peak.as_dict(),
        "seed": seed if rnd.sequences else None,
        "train": None if stats is None else {
            "steps": stats.steps, "real_tokens": stats.real_tokens, "seconds": round(stats.seconds, 3),
            "final_loss": stats.final_loss,
        },
        "answers": answers,
    }
