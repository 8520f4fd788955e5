"""The few-shot ARC experiment (SEAL's second domain): one validated object every stage receives.

Defaults follow the paper's protocol (Llama-3.2-1B, LoRA rank 128 / alpha 16, 15 self-edits per
training task, 5 per evaluation task, 2 attempts) except the task selection, which defaults to a
few small-grid tasks so a CPU run stays short; the paper's spec names the ids file instead.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, field_validator, model_validator

from seal_repro.spec.arc_self_edit import (
    MAX_EPOCHS,
    MAX_LEARNING_RATE,
    PLACEHOLDER,
    Augmentations,
    LossOn,
    SelfEdit,
    TrainingChoice,
)
from seal_repro.spec.base import (
    MAX_BATCH,
    MAX_RESAMPLES,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_TOKENS,
    SpecPath,
    SpecProblems,
    Strict,
    unique_items,
)
from seal_repro.spec.executor import LocalExecutor
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.self_edit import SamplingSpec
from seal_repro.spec.training import Schedule, TrainingSpec, default

FewShotCondition = Literal["icl", "ttt_no_rl", "seal", "oracle_ttt"]
ALL_FEWSHOT_CONDITIONS: tuple[FewShotCondition, ...] = ("icl", "ttt_no_rl", "seal", "oracle_ttt")
_TASK_ID = re.compile(r"^[0-9a-f]{8}$")
ARC_SPLIT_TASKS = 400  # ARC-AGI-1 has 400 training and 400 evaluation tasks


class TaskSelectionSpec(Strict):
    """One role's tasks: explicit `ids`, the role's list in `ids_file`, or the first `n` by id (optionally small)."""

    split: Literal["train", "eval"]
    ids: tuple[str, ...] | None = Field(None, max_length=ARC_SPLIT_TASKS,
                                        description="ARC task ids, used in this order (a split has 400)")
    ids_file: SpecPath | None = Field(
        None,
        description='JSON {"train": [...], "eval": [...]} like the paper\'s filtered_task_ids.json (this role\'s list '
        "is used); relative to the spec file",
    )
    n: PositiveInt | None = Field(None, le=ARC_SPLIT_TASKS, description="the first n tasks of the split by id (after "
                                  f"max_cells; at most {ARC_SPLIT_TASKS}, the tasks in a split)")
    max_cells: PositiveInt | None = Field(
        None, le=900, description="with n: only tasks whose every grid has at most this many cells"
    )

    @field_validator("ids")
    @classmethod
    def _ids(cls, v):
        if v is None:
            return v
        if not v:
            raise ValueError("name at least one task id")
        bad = [i for i in v if not _TASK_ID.match(i)]
        if bad:
            raise ValueError(f"not 8-hex-digit ARC task ids: {', '.join(bad)}")
        return unique_items(v)

    @model_validator(mode="after")
    def _one_way(self):
        given = [k for k in ("ids", "ids_file", "n") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of ids, ids_file, n (got {', '.join(given) or 'none'})")
        if self.max_cells is not None and self.n is None:
            raise ValueError("max_cells only filters a selection by n; explicit ids are used as given")
        return self


class FewShotTasksSpec(Strict):
    train: TaskSelectionSpec = TaskSelectionSpec(split="train", n=4, max_cells=36)
    eval: TaskSelectionSpec = TaskSelectionSpec(split="eval", n=4, max_cells=36)

    @model_validator(mode="after")
    def _disjoint(self):
        # Different ARC splits never share ids; within one split only explicit lists can be checked here
        # (ids_file lists are checked when loaded, by fewshot.tasks.load_task_sets).
        if self.train.split != self.eval.split:
            return self
        if self.train.n is not None or self.eval.n is not None:
            raise ValueError(
                f"tasks.train and tasks.eval both draw from split {self.train.split!r}, and selecting by n would "
                "pick overlapping tasks; give ids or ids_file for both"
            )
        if self.train.ids and self.eval.ids:
            both = sorted(set(self.train.ids) & set(self.eval.ids))
            if both:
                raise ValueError(f"tasks.train.ids and tasks.eval.ids overlap: {', '.join(both)}")
        return self


class FewShotSelfEditSpec(Strict):
    template: str | None = Field(
        None, description=f"prompt asking for a self-edit; must contain {PLACEHOLDER}; null = built-in"
    )
    sampling: SamplingSpec = SamplingSpec()
    n_train: PositiveInt = Field(15, le=MAX_SAMPLES, description=f"self-edits sampled per training task (RL; at most "
                                 f"{MAX_SAMPLES})")
    n_eval: PositiveInt = Field(5, le=MAX_SAMPLES, description=f"self-edits sampled per evaluation task (at most "
                                f"{MAX_SAMPLES})")

    @field_validator("template")
    @classmethod
    def _placeholder(cls, v):
        if v is not None and PLACEHOLDER not in v:
            raise ValueError(f"must contain the placeholder {PLACEHOLDER}")
        return v

    @model_validator(mode="after")
    def _greedy(self):
        if self.sampling.temperature == 0 and max(self.n_train, self.n_eval) > 1:
            raise ValueError(
                f"self_edit.sampling.temperature is 0 (greedy) but self_edit.n_train/n_eval ask for "
                f"{self.n_train}/{self.n_eval} samples, which would all be identical"
            )
        return self


PAPER_ARC_LORA = LoraSpec(rank=128, alpha=16.0, target_modules=("q_proj", "v_proj", "gate_proj", "down_proj", "up_proj"))


class FewShotInnerLoopSpec(TrainingSpec):
    """Test-time training: the training settings (spec/training.py), where `lr`, `epochs` and `loss_on` are what a
    self-edit gets when it leaves its own choice out."""

    lora: LoraSpec = PAPER_ARC_LORA
    batch_size: PositiveInt = default("batch_size", 2)
    lr: float = default("lr", 1e-4)
    epochs: PositiveInt = default("epochs", 2)
    lr_schedule: Schedule = default("lr_schedule", "cosine")
    max_steps: PositiveInt | None = default("max_steps", 375)
    max_seq_len: PositiveInt = default("max_seq_len", 8192)
    max_examples: PositiveInt = Field(250, le=100_000, description="cap on test-time-training examples per adapter "
                                      "(after dedup; at most 100 000)")
    leave_two_out: bool = Field(True, description="also hold out a second demonstration when there are three or more")
    loss_on: LossOn = Field("output_tokens", description="when a self-edit gives no loss_on")

    @model_validator(mode="after")
    def _rules(self):
        problems = []
        if self.batch_size > self.max_examples:
            problems.append(("batch_size", f"({self.batch_size}) is larger than inner_loop.max_examples "
                                           f"({self.max_examples})"))
        if self.lr > MAX_LEARNING_RATE:
            problems.append(("lr", f"{self.lr:g} is above {MAX_LEARNING_RATE:g}, the most a self-edit may choose"))
        if self.epochs > MAX_EPOCHS:
            problems.append(("epochs", f"{self.epochs} is above {MAX_EPOCHS}, the most a self-edit may choose"))
        if problems:
            raise SpecProblems(problems)
        return self


# Assumption: the paper gives no numbers for its oracle; this is the TTT recipe of Akyürek et al.
# (every augmentation, loss on everything, 2 epochs at 5e-5). Set `oracle:` in a spec to change it.
DEFAULT_ORACLE = SelfEdit(
    augmentations=Augmentations(basic=True, size=True, chain=True, repeat=True),
    training=TrainingChoice(loss_on="all_tokens", learning_rate=5e-5, epochs=2),
)


class PolicySFTSpec(TrainingSpec):
    """Fine-tuning the self-edit policy on the kept self-edits (paper: rank 16, alpha 16, lr 5e-5, 8 epochs, batch 5);
    the loss is on the self-edit only, never on its prompt."""

    lora: LoraSpec = LoraSpec(rank=16, alpha=16.0)
    lr: float = default("lr", 5e-5)
    epochs: PositiveInt = default("epochs", 8)
    batch_size: PositiveInt = default("batch_size", 5)


class FewShotRLSpec(Strict):
    iterations: PositiveInt = Field(1, le=1000, description="ReST-EM rounds (the paper runs 1; at most 1000)")
    keep: Literal["solved"] = Field("solved", description="solved: every self-edit whose adapter solves its task")
    sft: PolicySFTSpec = PolicySFTSpec()


class FewShotEvaluationSpec(Strict):
    n_attempts: int = Field(2, ge=1, le=3, description="guesses per test output (ARC allows 2)")
    max_new_tokens: PositiveInt = Field(1024, le=MAX_TOKENS, description="enough for a 30x30 grid written as digits "
                                        f"(at most {MAX_TOKENS}, the longest context of a supported model)")
    vote_families: tuple[Literal["basic", "size", "chain", "repeat"], ...] = Field(
        ("basic",), description="transforms whose back-mapped predictions vote, besides the identity; [] = identity only"
    )
    bootstrap_resamples: PositiveInt = Field(2000, le=MAX_RESAMPLES, description=f"at most {MAX_RESAMPLES}: the "
                                             "CI's Monte-Carlo error is ~1/sqrt(n)")
    batch_size: PositiveInt = Field(8, le=MAX_BATCH, description=f"prompts per generation batch (at most {MAX_BATCH})")

    @field_validator("vote_families")
    @classmethod
    def _unique_families(cls, v):
        return unique_items(v)


class FewShotSpec(Strict):
    domain: Literal["fewshot"] = "fewshot"
    description: str = ""
    protocol: str | None = Field(None, description="the paper table/figure and version this spec reproduces")
    seed: NonNegativeInt = Field(0, le=MAX_SEED, description=f"at most {MAX_SEED} (2**32 - 1): numpy takes seeds below "
                                 "2**32, and the stages add offsets to it")
    model: ModelSpec
    tasks: FewShotTasksSpec = FewShotTasksSpec()
    self_edit: FewShotSelfEditSpec = FewShotSelfEditSpec()
    inner_loop: FewShotInnerLoopSpec = FewShotInnerLoopSpec()
    oracle: SelfEdit = Field(DEFAULT_ORACLE, description="the fixed hand-chosen self-edit of the oracle_ttt condition")
    rl: FewShotRLSpec = FewShotRLSpec()
    evaluation: FewShotEvaluationSpec = FewShotEvaluationSpec()
    conditions: tuple[FewShotCondition, ...] = ALL_FEWSHOT_CONDITIONS
    executor: LocalExecutor = Field(LocalExecutor(), description="where TTT rounds run: the stage's process, or "
                                    "forked copies of it side by side (CPU); changes no result, left out of the hash")

    @field_validator("conditions")
    @classmethod
    def _conditions(cls, v):
        if not v:
            raise ValueError("name at least one condition")
        return unique_items(v)
