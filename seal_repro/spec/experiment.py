"""The whole experiment: one validated object that every stage receives."""

from typing import Literal

from pydantic import Field, NonNegativeInt, field_validator

from seal_repro.spec.base import Strict
from seal_repro.spec.data import DataSpec
from seal_repro.spec.evaluation import EvaluationSpec
from seal_repro.spec.inner_loop import InnerLoopSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.self_edit import SelfEditSpec

Condition = Literal["base", "passage", "base_synthetic", "teacher_synthetic"]
ALL_CONDITIONS: tuple[Condition, ...] = ("base", "passage", "base_synthetic", "teacher_synthetic")


class ExperimentSpec(Strict):
    domain: Literal["knowledge"] = "knowledge"
    description: str = ""
    protocol: str | None = Field(None, description="the paper table/figure and version this spec reproduces")
    seed: NonNegativeInt = 0
    model: ModelSpec
    data: DataSpec = DataSpec()
    self_edit: SelfEditSpec = SelfEditSpec()
    inner_loop: InnerLoopSpec = InnerLoopSpec()
    evaluation: EvaluationSpec = EvaluationSpec()
    conditions: tuple[Condition, ...] = ALL_CONDITIONS

    @field_validator("conditions")
    @classmethod
    def _unique(cls, v):
        if not v:
            raise ValueError("name at least one condition")
        dup = sorted({c for c in v if v.count(c) > 1})
        if dup:
            raise ValueError(f"listed twice: {', '.join(dup)}")
        return v
