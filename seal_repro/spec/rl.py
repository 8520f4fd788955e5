"""SEAL's outer loop for knowledge incorporation: ReST-EM on training passages disjoint from the evaluation ones.

Each iteration the current policy samples `k` self-edits per training passage; each self-edit is scored by the
inner loop (`repeats` fresh adapters, the spec's `inner_loop` and `evaluation`); the `keep` rule picks the
self-edits the policy is then fine-tuned on (`sft`, loss on the self-edit only, never on its prompt).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from seal_repro.spec.base import MAX_PASSAGES, MAX_REPEATS, MAX_SAMPLES, Strict
from seal_repro.spec.data import DataSpec
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.training import TrainingSpec, default


class PolicySFTSpec(TrainingSpec):
    """Fine-tuning the policy on the kept self-edits (paper/reference: LoRA r64/alpha128 on all 7 projections, lr 3e-4,
    2 epochs, 10 examples per optimizer step — train_SFT.sh runs 2 processes of batch 1 with 5 accumulation steps,
    which one process matches with batch_size 2, grad_accum 5 — no gradient clipping under its DeepSpeed config, and
    sequences as long as the longest example). Iteration 1 trains a LoRA on the base model; iteration i >= 2 first
    merges the previous policy into the base weights and trains a fresh LoRA on top (as the reference's
    train_SFT.sh). The loss is on the self-edit only, never on its prompt. The defaults here are the embedded
    default's; specs/knowledge/paper-qwen2.5-7b-rl.yaml sets the reference's values."""

    lora: LoraSpec = LoraSpec(rank=64, alpha=128.0)
    lr: float = default("lr", 3e-4)
    epochs: PositiveInt = default("epochs", 2)
    grad_accum: PositiveInt = default("grad_accum", 5)


class RLSpec(Strict):
    train_data: DataSpec = Field(
        description="the training passages; must not overlap `data` (for fictional data: a different offset range)"
    )
    iterations: int = Field(2, ge=1, le=1000, description="ReST-EM iterations (the paper runs 2)")
    k: PositiveInt = Field(5, le=MAX_SAMPLES, description="self-edits sampled per training passage per iteration "
                           f"(at most {MAX_SAMPLES})")
    repeats: PositiveInt = Field(3, le=MAX_REPEATS, description="inner-loop repeats per self-edit (fresh seeds); the "
                                 f"reward is their mean (at most {MAX_REPEATS})")
    baseline: Literal["base", "passage"] = Field(
        "base", description="what a self-edit must beat: the policy unadapted (base) or trained on the passage alone"
    )
    reward: Literal["accuracy", "gain"] = Field(
        "accuracy", description="accuracy: mean adapted accuracy; gain: that minus the baseline's accuracy"
    )
    keep: Literal["best1", "top_m", "beats_baseline"] = Field(
        "best1", description="best1: the best self-edit per passage (the reference); top_m: the best m; "
        "beats_baseline: every self-edit whose accuracy is above the baseline's"
    )
    top_m: PositiveInt | None = Field(None, le=MAX_SAMPLES, description="m for keep: top_m (at most rl.k)")
    sft: PolicySFTSpec = PolicySFTSpec()
    passages_per_iteration: PositiveInt | None = Field(
        None, le=MAX_PASSAGES,
        description="iteration i samples for the i-th block of this many training passages (the reference "
        "draws each iteration's passages afresh); null: every iteration uses every training passage")
    held_in_check: bool = Field(
        False, description="after the last iteration, also sample and reward the final policy's self-edits on the "
        "training passages (no SFT): with each iteration's samples, whether every policy beats the one before it")

    @model_validator(mode="after")
    def _keep_rules(self):
        if self.keep == "top_m":
            if self.top_m is None:
                raise ValueError("rl.keep is 'top_m' but rl.top_m is not set")
            if self.top_m > self.k:
                raise ValueError(f"rl.top_m ({self.top_m}) is larger than rl.k ({self.k}), the self-edits per passage")
        elif self.top_m is not None:
            raise ValueError(f"rl.top_m is only read when rl.keep is 'top_m' (it is {self.keep!r})")
        return self


def _window(d: DataSpec, default_n: int) -> tuple[int, float]:
    n = d.n_passages if d.n_passages is not None else (default_n if d.kind == "fictional" else float("inf"))
    return d.offset, d.offset + n


def overlap_problem(train: DataSpec, evaluation: DataSpec, default_fictional: int = 8) -> str | None:
    """Why the training passages would overlap the evaluation passages, or None when the spec alone shows they
    cannot. Different files are compared passage by passage when loaded (stage prepare_data)."""
    if train.kind != evaluation.kind or (train.kind != "fictional" and train.path != evaluation.path):
        return None
    (a0, a1), (b0, b1) = _window(train, default_fictional), _window(evaluation, default_fictional)
    if not (a0 < b1 and b0 < a1):
        return None

    def show(lo, hi):
        return f"{lo}–{int(hi) - 1}" if hi != float("inf") else f"{lo} to the end"

    source = "generated with the same seed" if train.kind == "fictional" else f"from {train.path}"
    fix = (f"set rl.train_data.offset to {int(b1)} or more" if b1 != float("inf")
           else "set data.n_passages so the two ranges can be kept apart")
    return f"passages {show(a0, a1)} overlap the evaluation passages {show(b0, b1)} ({source}); {fix}"
