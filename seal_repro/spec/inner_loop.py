"""The inner loop: how one self-edit becomes a LoRA adapter."""

from typing import Annotated, Literal

from pydantic import Field, PositiveInt, StringConstraints, model_validator

from seal_repro.spec.base import MAX_LORA_RANK, SpecProblems, Strict
from seal_repro.spec.training import TrainingSpec


class LoraSpec(Strict):
    rank: PositiveInt = Field(32, le=MAX_LORA_RANK, description=f"at most {MAX_LORA_RANK}: no supported model is "
                              "wider, and a rank above a layer's width adds nothing")
    alpha: float = Field(64.0, gt=0, le=65536, description="scaling numerator; the paper's knowledge runs use 2*rank "
                         "(at most 65536: a larger alpha/rank scale overflows half-precision activations)")
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    target_modules: tuple[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$", max_length=200)],
                          ...] = Field(
        ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"),
        description="the linear layers adapted (module names); the reference's inner loop names none, so PEFT's "
        "per-architecture default applies (Qwen2, Llama: q_proj, v_proj)")

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
    split_rules: Literal["seal_repro", "reference"] = Field(
        "seal_repro",
        description="the details of `split` (seal_repro/knowledge/sequences.py). seal_repro: lines drops a "
        "':'-ended preamble before a numbered list and keeps 'Question N:' blocks (at a line start) together; "
        "segments cuts at lines of dashes. reference: the reference's build_train_sequences — lines cuts at every "
        "'---', then one sequence per non-empty stripped line, the first dropped when the second starts with '1.', "
        "or one per 'Question N:' block when the text has 'Question N:' and 'Answer:' (split_newlines: true); "
        "segments cuts at every '---' only (split_newlines: false), and an empty self-edit then gives a title-only "
        "sequence; none keeps the whole text (no reference counterpart)",
    )
    append_passage: bool = Field(True, description="also train on the passage itself (the paper does)")
    prefix_title: bool = Field(
        False, description="prefix every training sequence with the passage title and a newline ('{title}\\n', the "
        "reference's TRAINING_SEQUENCE_TEMPLATE)")
    mask_prompt: bool = Field(False, description="for (prompt, completion) sequences, no loss on the prompt tokens")
