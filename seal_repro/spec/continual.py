"""Continual self-edits (paper §Limitations, catastrophic forgetting): passages are edited into one model in
sequence. At each step the current model writes a self-edit for the next passage, a fresh LoRA is trained on it
(`inner_loop`), merged into the weights, and every passage seen so far is scored — a retention matrix.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from seal_repro.spec.base import Strict

MAX_CONTINUAL_PASSAGES = 1000  # step t scores all t passages so far: the work grows as n_passages squared
from seal_repro.spec.self_edit import SamplingSpec


class ContinualSpec(Strict):
    n_passages: int = Field(8, ge=2, le=MAX_CONTINUAL_PASSAGES, description="edits per sequence, drawn from the "
                            "evaluation passages (reference: 8; at most 1000: step t scores all t passages so far)")
    sequences: PositiveInt = Field(1, le=1000, description="independent random orders, averaged (reference: 8; at "
                                   "most 1000)")
    start: Literal["base", "seal"] = Field(
        "base", description="the model that edits itself: the base model, or the final SEAL policy (reference)"
    )
    sampling: SamplingSpec | None = Field(None, description="self-edit sampling here; null = self_edit.sampling")
