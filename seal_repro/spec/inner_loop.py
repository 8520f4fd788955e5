"""The inner loop: how one self-edit becomes a LoRA adapter."""

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveInt, model_validator

from seal_repro.spec.base import SpecProblems, Strict


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


class InnerLoopSpec(Strict):
    lora: LoraSpec = LoraSpec()
    epochs: PositiveInt = 10
    lr: float = Field(1e-3, gt=0, lt=1)
    weight_decay: NonNegativeFloat = 0.0
    lr_schedule: Literal["constant", "linear", "cosine"] = Field(
        "linear", description="linear decay to 0 is the HF Trainer default the reference code ran with"
    )
    warmup_steps: int = Field(0, ge=0)
    batch_size: PositiveInt = 1
    grad_accum: PositiveInt = 1
    split: Literal["none", "lines", "segments"] = Field(
        "lines", description="how a self-edit becomes training sequences: whole, one per line, or per '---' segment"
    )
    append_passage: bool = Field(True, description="also train on the passage itself (the paper does)")
    prefix_title: bool = Field(False, description="prefix every training sequence with the passage title")
    mask_prompt: bool = Field(False, description="for (prompt, completion) sequences, no loss on the prompt tokens")
    max_seq_len: PositiveInt = 2048
    pad_to_max_len: bool = Field(
        False,
        description="reference-compatible: pad every sequence to max_seq_len with EOS and put loss on the padding",
    )
    packing: bool = Field(
        True,
        description="lay a batch's sequences end to end in rows (attention kept within each sequence) instead of "
                    "padding each to the longest: the same loss, no compute spent on padding; ignored with pad_to_max_len",
    )
