"""Continued pretraining (CPT), the multi-passage setting: one model trained on the self-edits of many passages
at once, then asked every one of their questions (paper Table 2, the n = 200 column; v1 trains a LoRA, v2 fine-tunes
all weights). Each condition is one training corpus; the model trained is always the base model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, field_validator, model_validator

from seal_repro.spec.base import MAX_PASSAGES, MAX_SAMPLES, Strict, unique_items
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.training import TrainingSpec, default

CPTCondition = Literal["base", "passage", "base_synthetic", "teacher_synthetic", "seal"]
ALL_CPT_CONDITIONS: tuple[CPTCondition, ...] = ("base", "passage", "base_synthetic", "teacher_synthetic", "seal")
PROTOCOL_VERSIONS = {"lora": "paper v1 (LoRA)", "full": "paper v2 (full fine-tuning)"}


MAX_PROCESSES = 1024  # training processes of one distributed run: far more GPUs than any run of this protocol uses


class DistributedSpec(Strict):
    """Full fine-tuning (cpt.method: full) over several processes, one per GPU, launched with `accelerate launch`."""

    backend: Literal["fsdp", "ddp"] = Field(
        "fsdp", description="fsdp: weights, gradients and AdamW states sharded over the processes (torch FSDP2, "
        "float32 master shards, bfloat16 compute when model.dtype is bfloat16) — what lets a 7B model's full "
        "fine-tuning fit (16 bytes a weight: 112 GB for 7B, not counting activations); ddp: a whole copy per "
        "process, gradients averaged (faster for a model that fits one GPU)")
    processes: int = Field(2, ge=2, le=MAX_PROCESSES, description="training processes (GPUs on a CUDA machine; CPU "
                           f"processes otherwise), at least 2 and at most {MAX_PROCESSES}")


class CPTSpec(TrainingSpec):
    method: Literal["lora", "full"] = Field("lora", description="lora: paper v1 protocol; full: paper v2 protocol")
    n_passages: PositiveInt | None = Field(None, le=MAX_PASSAGES, description="the first n evaluation passages; "
                                           "null = all of them")
    conditions: tuple[CPTCondition, ...] = ALL_CPT_CONDITIONS
    self_edits_per_passage: PositiveInt | None = Field(
        None, le=MAX_SAMPLES, description="self-edits per passage in the corpus (reference: 5); null = every one available"
    )
    split: Literal["none", "lines", "segments"] | None = Field(
        None, description="how self-edits become sequences (see inner_loop.split); null = inner_loop.split"
    )
    lora: LoraSpec | None = Field(None, description="method lora only; null = inner_loop.lora")
    seal_model: Literal["base", "policy"] = Field(
        "base", description="the model the seal condition's corpus trains: the base model (as every other condition) "
        "or the final SEAL policy merged in (the reference's CPT adapts the RL checkpoint)")
    distributed: DistributedSpec | None = Field(
        None, description="method full only: train each condition's model in `processes` processes (accelerate "
        "launch; python -m seal_repro.knowledge.cpt is the worker) and score it in the stage's process; null: "
        "train in the stage's process")
    epochs: PositiveInt = default("epochs", 3)
    batch_size: PositiveInt = default("batch_size", 4)
    grad_accum: PositiveInt = default("grad_accum", 2)

    @field_validator("conditions")
    @classmethod
    def _unique(cls, v):
        return unique_items(v, allow_empty=False)

    @model_validator(mode="after")
    def _lora_only_for_lora(self):
        if self.method == "full" and self.lora is not None:
            raise ValueError("cpt.lora is only read when cpt.method is 'lora' (it is 'full')")
        if self.method == "lora" and self.distributed is not None:
            raise ValueError("cpt.distributed is only read when cpt.method is 'full' (it is 'lora')")
        return self

    @property
    def protocol_version(self) -> str:
        return PROTOCOL_VERSIONS[self.method]
