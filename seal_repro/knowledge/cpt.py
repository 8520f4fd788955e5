"""Continued pretraining (the multi-passage setting): one training corpus per condition, one model trained on it.

The corpus of a condition joins, for every passage, the training sequences the single-passage inner loop would
use (the split self-edits, then the passage) for each of its first `self_edits_per_passage` self-edits, as the
reference's CPT.py does. `cpt.method` picks a LoRA (paper v1) or all weights (paper v2); training reuses the
inner loop's trainer (`LoraEngine.train`), so batching, schedule and masking are the same code.
"""

from __future__ import annotations

from typing import Sequence

from seal_repro.data.records import Passage
from seal_repro.engine import LoraEngine, TrainConfig, TrainExample
from seal_repro.knowledge.sequences import training_sequences


def condition_self_edits(condition: str, passage: Passage, base_edits: dict[str, list[str]],
                         seal_edits: dict[str, list[str]]) -> list[str | None]:
    """The self-edits a condition trains on for one passage; [None] = the passage alone, [] = no training."""
    if condition == "base":
        return []
    if condition == "passage":
        return [None]
    source = {"base_synthetic": base_edits, "seal": seal_edits}.get(condition)
    edits = list(passage.teacher_self_edits) if condition == "teacher_synthetic" else list(source.get(passage.id, []))
    if not edits:
        raise ValueError(f"cpt condition {condition!r}: passage {passage.id} has no self-edits")
    return edits


def corpus(condition: str, passages: Sequence[Passage], base_edits: dict[str, list[str]],
           seal_edits: dict[str, list[str]], spec) -> list[str]:
    cap = spec.cpt.self_edits_per_passage
    rules = spec.inner_loop if spec.cpt.split is None else spec.inner_loop.model_copy(update={"split": spec.cpt.split})
    seqs: list[str] = []
    for p in passages:
        edits = condition_self_edits(condition, p, base_edits, seal_edits)
        for edit in edits[:cap] if cap else edits:
            seqs += training_sequences(edit, p.title, p.context, rules)
    return seqs


def train_config(cpt, inner_loop) -> TrainConfig:
    """cpt's optimisation settings; sequence length and padding as the inner loop (the same sequences)."""
    return TrainConfig(epochs=cpt.epochs, lr=cpt.lr, batch_size=cpt.batch_size, grad_accum=cpt.grad_accum,
                       lr_schedule=cpt.lr_schedule, warmup_steps=cpt.warmup_steps,
                       max_seq_len=inner_loop.max_seq_len, pad_to_max_len=inner_loop.pad_to_max_len,
                       packing=inner_loop.packing)


class FullEngine(LoraEngine):
    """LoraEngine's trainer over *every* weight of the model (the paper's v2 CPT protocol): no adapter, so
    training changes the model itself; `reset` only seeds. Build a fresh one (and model) per condition."""

    def __init__(self, model, tokenizer):  # noqa: super().__init__ would wrap the model in a LoRA
        import torch

        for p in model.parameters():
            p.requires_grad_(True)
        self.tokenizer = tokenizer
        self.adapter_name = None
        self.peft_model = self.base_model = model
        self._lora_layers = []
        self.trainable = [p for p in model.parameters() if p.requires_grad]
        self._bind_device(model)
        self._torch = torch
        model.eval()

    def reset(self, seed: int) -> None:
        self._torch.manual_seed(seed)

    def logits_differ_from_base(self, *args, **kwargs) -> bool:
        raise NotImplementedError("a fully fine-tuned model keeps no copy of its base weights")

    def save_adapter(self, path) -> None:
        raise NotImplementedError("full fine-tuning has no adapter; save the model itself")


def examples(seqs: Sequence[str]) -> list[TrainExample]:
    return [TrainExample(s) for s in seqs]
