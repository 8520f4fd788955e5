"""ReST-EM, SEAL's outer loop, for any domain: sample → reward → keep → SFT, one iteration at a time.

An iteration: the current policy samples k self-edits per training context (a passage; an ARC task); each is
rewarded by the domain's inner loop (adapted accuracy; task solved); a keep rule picks the ones the policy is
fine-tuned on (E-step), and the SFT trains on (self-edit prompt → kept self-edit) pairs with the loss on the
self-edit only (M-step). The domain supplies the three functions; this module owns the loop, the keep rules and
the per-iteration statistics every report shows, so both domains keep and report alike.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from seal_repro.engine import LoraEngine, TrainExample, train_config


@dataclass(frozen=True)
class Sample:
    """One sampled self-edit: for context `context_id`, sample `index` of k."""

    context_id: str
    index: int
    text: str
    tokens: int = 0  # generated tokens
    truncated: bool = False  # stopped by max_new_tokens, not by the end of its text


@dataclass(frozen=True)
class Scored:
    sample: Sample
    reward: float  # NaN: could not be scored (never kept)
    accuracy: float  # what the adapted model scored (the reward is this, or this minus the baseline)
    baseline: float | None = None  # the accuracy to beat, where the domain has a baseline

    @property
    def beats_baseline(self) -> bool:
        return self.baseline is not None and not math.isnan(self.accuracy) and self.accuracy > self.baseline


def _by_context(rows: Sequence[Scored]) -> dict[str, list[Scored]]:
    out: dict[str, list[Scored]] = defaultdict(list)
    for r in rows:
        if not math.isnan(r.reward):
            out[r.sample.context_id].append(r)
    return out


def _top(rows: Sequence[Scored], m: int) -> list[Scored]:
    """The m best of each context; ties go to the earlier sample."""
    kept = []
    for ctx, group in _by_context(rows).items():
        kept += sorted(group, key=lambda r: (-r.reward, r.sample.index))[:m]
    return kept


KEEP_RULES: dict[str, Callable[[Sequence[Scored], int | None], list[Scored]]] = {
    # the reference's knowledge rule: the best of k per context, whatever its reward
    "best1": lambda rows, m: _top(rows, 1),
    "top_m": lambda rows, m: _top(rows, m or 1),
    # every self-edit whose reward is above its context's baseline (knowledge: the unadapted policy's accuracy)
    "beats_baseline": lambda rows, m: [r for r in rows if r.beats_baseline],
    # the reference's ARC rule: every self-edit with a positive reward (its adapter solved the task)
    "solved": lambda rows, m: [r for r in rows if not math.isnan(r.reward) and r.reward > 0],
}


def keep_rows(rows: Sequence[Scored], rule: str, top_m: int | None = None) -> list[Scored]:
    """The rows `rule` keeps, ordered by (context, sample index)."""
    try:
        pick = KEEP_RULES[rule]
    except KeyError:
        raise ValueError(f"unknown keep rule {rule!r}; the rules are: {', '.join(KEEP_RULES)}") from None
    return sorted(pick(rows, top_m), key=lambda r: (r.sample.context_id, r.sample.index))


def _mean(values) -> float:
    vals = [float(v) for v in values if v is not None and not math.isnan(v)]
    return sum(vals) / len(vals) if vals else math.nan


def iteration_metrics(rows: Sequence[Scored], kept: Sequence[Scored]) -> dict:
    """What an iteration's samples looked like: reward distribution, best-of-k, baseline, kept, length, truncation."""
    scored = [r for r in rows if not math.isnan(r.reward)]
    groups = _by_context(rows)
    with_baseline = [r for r in scored if r.baseline is not None]
    return {
        "sampled": len(rows), "scored": len(scored), "kept": len(kept),
        "share_kept": len(kept) / len(rows) if rows else math.nan,
        "mean_reward": _mean(r.reward for r in scored),
        "mean_accuracy": _mean(r.accuracy for r in scored),
        "best_of_k_mean_reward": _mean(max(r.reward for r in g) for g in groups.values()),
        "mean_baseline": _mean(r.baseline for r in with_baseline) if with_baseline else None,
        "share_beating_baseline": _mean(float(r.beats_baseline) for r in with_baseline) if with_baseline else None,
        "mean_self_edit_tokens": _mean(r.sample.tokens for r in rows),
        "share_truncated": _mean(float(r.sample.truncated) for r in rows),
    }


@dataclass
class Iteration:
    samples: list[Sample]
    scored: list[Scored]
    kept: list[Scored]
    sft: dict | None  # the SFT's statistics; None: nothing was kept, the policy stays as it was
    metrics: dict = field(default_factory=dict)


def iterate(contexts: Sequence, *, sample: Callable[[Sequence], list[Sample]],
            reward: Callable[[list[Sample]], list[Scored]], keep: str, top_m: int | None,
            sft: Callable[[list[Scored]], dict | None]) -> Iteration:
    """One ReST-EM iteration with the domain's sampler, reward and SFT."""
    samples = sample(contexts)
    scored = reward(samples)
    kept = keep_rows(scored, keep, top_m)
    stats = sft(kept) if kept else None
    return Iteration(samples, scored, kept, stats, iteration_metrics(scored, kept))


def sft_policy(engine: LoraEngine, examples: Sequence[TrainExample], settings, seed: int) -> dict | None:
    """Fine-tune `engine`'s adapter (freshly reset, seeded) on (prompt → self-edit) pairs, loss on the self-edit
    only; `settings` is the section's training settings (spec/training.py). None when there is nothing to learn."""
    engine.reset(seed)
    if not examples:
        return None
    stats = engine.train(list(examples), train_config(settings, mask_prompt=True), seed=seed)
    return {"examples": len(examples), "steps": stats.steps, "seconds": round(stats.seconds, 3),
            "final_loss": stats.final_loss, "real_tokens": stats.real_tokens}
