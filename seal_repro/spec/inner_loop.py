"""The inner loop: how one self-edit becomes a LoRA adapter."""

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from seal_repro.spec.base import SpecProblems, Strict
from seal_repro.spec.training import TrainingSpec


class LoraSpec(Strict):
    rank: PositiveInt = 32
    alpha: float = Field(64.0, gt=0, description="scaling numerator; the paper's knowledge runs use 2*rank")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")

    @model_validator(mode="after")
    def _targets(self):
        # Keys relative to wherever this LoRA sits (inner_loop.lora, rl.sft.lora, cpt.lora, ...).
        problems = []
        if not self.target_modules:
            problems.append(("target_modules", "must name at least one module"))
        if "alpha" in self.model_fields_set and "rank" not in self.model_fields_set:
            problems.append(("alpha", f"is set ({self.alpha:g}) but rank is not: the update is scaled by alpha/rank, "
                             f"so give rank too (it would default to {self.rank})"))
        if problems:
            raise SpecProblems(problems)
        return self


class InnerLoopSpec(TrainingSpec):
    """How one self-edit becomes a LoRA adapter: the training settings (spec/training.py) plus what is trained."""

    lora: LoraSpec = LoraSpec()
    split: Literal["none", "lines", "segments"] = Field(
        "lines", description="how a self-edit becomes training sequences: whole, one per line, or per '---' segment"
    )
    append_passage: bool = Field(True, description="also train on the passage itself (the paper does)")
    prefix_title: bool = Field(False, description="prefix every training sequence with the passage title")
    mask_prompt: bool = Field(False, description="for (prompt, completion) sequences, no loss on the prompt tokens")
