"""Training settings: the one model every trained thing in a spec derives from.

The inner loop (knowledge and ARC), the policy's SFT (both domains) and continued pretraining all train with
the same engine (`seal_repro.engine`), so they share one declaration of what training means — optimizer,
learning rate, schedule, warmup, gradient clipping, epochs, batch, accumulation, sequence length, batch
layout, how a batch is fitted in memory (gradient checkpointing, micro-batches) — and one function turns it
into the engine's config (`seal_repro.engine.train_config`). A section subclasses `TrainingSpec` to add its
own keys and, with `default(name, value)`, to give a field its own default (the policy's SFT runs at 3e-4, the
inner loop at 1e-3) without declaring it a second time.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt
from pydantic.fields import FieldInfo

from seal_repro.spec.base import MAX_BATCH, MAX_TOKENS, Strict

MAX_TRAIN_STEPS = 10_000_000  # optimizer steps: weeks of training at the fastest step the engine takes
MAX_TRAIN_EPOCHS = 1000  # passes over the data (protocols use 1-10)

Schedule = Literal["constant", "linear", "cosine"]


class TrainingSpec(Strict):
    optimizer: Literal["adamw"] = Field(
        "adamw", description="torch AdamW (betas 0.9/0.999, eps 1e-8): the HF Trainer's default, which the reference uses")
    lr: float = Field(1e-3, gt=0, lt=1, description="peak learning rate")
    weight_decay: NonNegativeFloat = Field(
        0.0, le=1.0, description="AdamW's decoupled decay: weights shrink by lr*weight_decay per step; at most 1, so "
        "with lr < 1 that factor stays below 1 and never flips a weight's sign")
    lr_schedule: Schedule = Field(
        "linear", description="decay after warmup; linear to 0 is the HF Trainer default the reference code ran with")
    warmup_steps: NonNegativeInt = Field(0, le=MAX_TRAIN_STEPS, description="optimizer steps of linear warmup from 0 "
                                         f"(at most {MAX_TRAIN_STEPS:,}: weeks of steps)")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0,
                                description="warmup as a share of the optimizer steps (used when warmup_steps is 0)")
    max_grad_norm: float | None = Field(
        None, gt=0, le=1e6, description="clip the gradient's global L2 norm to this before each step (HF Trainer: "
        "1.0; at most 1e6, which never clips a finite loss's gradient anyway); null: no clipping")
    epochs: PositiveInt = Field(10, le=MAX_TRAIN_EPOCHS, description=f"passes over the data (at most {MAX_TRAIN_EPOCHS})")
    max_steps: PositiveInt | None = Field(None, le=MAX_TRAIN_STEPS, description="cap on optimizer steps, whatever the "
                                          f"epochs (at most {MAX_TRAIN_STEPS:,}); null: none")
    batch_size: PositiveInt = Field(1, le=MAX_BATCH, description="sequences per forward/backward pass (at most "
                                    f"{MAX_BATCH}: no accelerator holds more)")
    grad_accum: PositiveInt = Field(1, le=1024, description="passes accumulated per optimizer step (at most 1024)")
    max_seq_len: PositiveInt = Field(2048, le=MAX_TOKENS, description="tokens per sequence; longer ones are cut "
                                     f"(at most {MAX_TOKENS}, the longest context of a supported model)")
    packing: bool = Field(
        True,
        description="lay a batch's sequences end to end in rows (attention kept within each sequence) instead of "
                    "padding each to the longest: the same loss, no compute spent on padding; ignored with pad_to_max_len",
    )
    pad_to_max_len: bool = Field(
        False,
        description="reference-compatible: pad every sequence to max_seq_len with EOS and put loss on the padding",
    )
    gradient_checkpointing: bool = Field(
        False,
        description="recompute each decoder layer's activations during the backward pass instead of keeping them "
                    "(transformers' gradient checkpointing, non-reentrant): activation memory of about one layer "
                    "instead of all of them, for ~1/3 more compute; the same loss and gradients. What fits a 7B "
                    "model's 4 x 2048-token CPT batch on one GPU",
    )
    micro_batch_size: PositiveInt | None = Field(
        None, le=MAX_BATCH,
        description="sequences per forward/backward pass within a batch: a batch of batch_size sequences is "
                    "computed in ceil(batch_size / micro_batch_size) passes whose gradients add up to the full "
                    "batch's (each pass's loss weighted by its share of the batch's target tokens). null: "
                    f"automatic — the whole batch, halved and retried when the accelerator runs out of memory, "
                    f"the size that fits remembered for the next steps (at most {MAX_BATCH})",
    )


def default(name: str, value: Any) -> FieldInfo:
    """TrainingSpec's field `name` — its type bounds and description — with `value` as the default, for a section
    whose training differs by default (repeat the annotation in the subclass: pydantic requires it)."""
    return FieldInfo.merge_field_infos(TrainingSpec.model_fields[name], default=value)
