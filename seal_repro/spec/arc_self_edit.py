"""The ARC self-edit's schema: the JSON object in which the model chooses its own test-time-training setup.

    {"augmentations": {"basic": true, "size": false, "chain": false, "repeat": true},
     "training": {"loss_on": "output_tokens", "learning_rate": 0.0001, "epochs": 3}}

All four augmentation flags are required (choosing them is the point); `training` and each of its keys may be left
out, and the run's defaults (spec `inner_loop`) fill the gaps. The schema lives in the spec layer because a spec
names a self-edit too (the oracle's); reading one out of model output is `seal_repro.fewshot.self_edit`.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# The augmentation families a self-edit switches on, in canonical order (seal_repro/fewshot/augment.py builds them).
FAMILIES: tuple[str, ...] = ("basic", "size", "chain", "repeat")
PLACEHOLDER = "{demonstrations}"  # where a self-edit prompt template shows the task's demonstrations

MAX_LEARNING_RATE = 1e-2
MAX_EPOCHS = 10

LossOn = Literal["all_tokens", "output_tokens"]


class _Frozen(BaseModel):
    # Lax by default so a hand-written spec may say `learning_rate: 1e-4` (a string to YAML 1.1);
    # model output is validated with strict=True in parse_self_edit.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Augmentations(_Frozen):
    basic: bool = Field(description="rotations, flips, transposes")
    size: bool = Field(description="upscaling by 2 and 3")
    chain: bool = Field(description="a symmetry followed by upscaling by 2")
    repeat: bool = Field(description="the examples again in another order")


class TrainingChoice(_Frozen):
    loss_on: LossOn | None = None
    learning_rate: float | None = Field(None, gt=0, le=MAX_LEARNING_RATE)
    epochs: int | None = Field(None, ge=1, le=MAX_EPOCHS)


class SelfEdit(_Frozen):
    augmentations: Augmentations
    training: TrainingChoice = TrainingChoice()

    @property
    def families(self) -> tuple[str, ...]:
        """The augmentation families switched on, in canonical order."""
        return tuple(f for f in FAMILIES if getattr(self.augmentations, f))

    def with_defaults(self, *, loss_on: LossOn, learning_rate: float, epochs: int) -> SelfEdit:
        """A copy whose missing training keys take the given defaults."""
        t = self.training
        filled = TrainingChoice(
            loss_on=t.loss_on or loss_on,
            learning_rate=t.learning_rate if t.learning_rate is not None else learning_rate,
            epochs=t.epochs if t.epochs is not None else epochs,
        )
        return self.model_copy(update={"training": filled})

    def to_json(self) -> str:
        """Canonical one-line JSON (unset training keys left out); parse_self_edit reads it back."""
        return json.dumps(self.model_dump(exclude_none=True), separators=(", ", ": "))
