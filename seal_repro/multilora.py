"""Many inner-loop rounds at once: B independent LoRA adapters ("slots") over one frozen model, trained in one
forward/backward per step and answered in one batched generation.

Every row of a batch belongs to one slot. Each adapted linear layer computes its frozen base product for all
rows at once (one large matmul instead of B small ones: what a CPU's vector units and a GPU want), then each
row's LoRA update through its own slot's factors — a batched matmul over the stacked adapters,
`W x + s·B[slot] A[slot] x`. A slot's loss is the mean over its own target tokens, and the step's loss is the sum
of the slots' losses, so each adapter's gradient is exactly the gradient it gets trained alone. AdamW is
element-wise, so one optimizer per slot (its own schedule, its own gradient clipping) makes every adapter follow
the trajectory it follows alone: the same seeds, the same batches, the same steps; rounds of different lengths
simply leave the batch when they finish. The answers match one-at-a-time training to float tolerance (the large
matmuls block differently), which a test checks.

Why by hand: PEFT can hold several adapters but runs one per forward (or mixes them by weight); it has no
per-row routing for training. S-LoRA/punica-style kernels do this for serving on GPUs only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F



@dataclass
class _Route:
    """What a routed forward needs in each adapted layer: the stacked factors and each row's slot."""

    a: torch.Tensor  # (slots, r, d_in)
    b: torch.Tensor  # (slots, d_out, r)
    rows: torch.Tensor  # (n_rows,) slot of each row


def routed_lora_forward(layer, x: torch.Tensor, route: _Route) -> torch.Tensor:
    """W x (+ bias) + s · B[slot(row)] A[slot(row)] x for a (rows, tokens, d_in) input."""
    weight, bias = layer.base_layer.weight, layer.base_layer.bias
    flat = x.reshape(-1, x.shape[-1])
    base = flat @ weight.t() if bias is None else torch.addmm(bias, flat, weight.t())
    base = base.view(x.shape[0], -1, base.shape[-1])
    a = route.a.index_select(0, route.rows)  # (rows, r, d_in)
    b = route.b.index_select(0, route.rows)  # (rows, d_out, r)
    # Factors in another dtype than the weights (float32 LoRA on bfloat16 weights, model.lora_dtype): the update
    # computed in the factors' dtype and the sum cast back, as PEFT's own LoRA forward does.
    h = torch.bmm(x.reshape(x.shape[0], -1, x.shape[-1]).to(a.dtype), a.transpose(1, 2))
    out = torch.baddbmm(base.to(a.dtype), h, b.transpose(1, 2), alpha=layer.scaling[layer.active_adapters[0]])
    return out.to(x.dtype).view(*x.shape[:-1], out.shape[-1])


class SlotBank:
    """B adapters' factors as leaf tensors (slot b: one A and one B per adapted layer), routed per row."""

    def __init__(self, engine, n_slots: int):
        self.engine = engine
        self.layers = engine.fusable_layers()
        name = engine.adapter_name
        self.a = [[layer.lora_A[name].weight.detach().clone() for layer in self.layers] for _ in range(n_slots)]
        self.b = [[layer.lora_B[name].weight.detach().clone() for layer in self.layers] for _ in range(n_slots)]

    def __len__(self) -> int:
        return len(self.a)

    def params(self, slot: int) -> list[torch.Tensor]:
        return self.a[slot] + self.b[slot]

    def capture(self, slot: int) -> None:
        """Slot `slot` takes the engine's current adapter weights (e.g. just after `engine.reset(seed)`)."""
        name = self.engine.adapter_name
        for k, layer in enumerate(self.layers):
            self.a[slot][k] = layer.lora_A[name].weight.detach().clone().requires_grad_(True)
            self.b[slot][k] = layer.lora_B[name].weight.detach().clone().requires_grad_(True)

    @torch.no_grad()
    def load(self, slot: int) -> None:
        """The engine's adapter takes slot `slot`'s weights (to save it, or probe it, the usual way)."""
        name = self.engine.adapter_name
        for k, layer in enumerate(self.layers):
            layer.lora_A[name].weight.copy_(self.a[slot][k])
            layer.lora_B[name].weight.copy_(self.b[slot][k])

    @contextlib.contextmanager
    def routed(self, rows: Sequence[int] | torch.Tensor):
        """Within the block, every forward of the engine's model sends row i through slot rows[i]'s adapter."""
        idx = torch.as_tensor(rows, dtype=torch.long, device=self.engine.device)
        for k, layer in enumerate(self.layers):
            layer._route = _Route(torch.stack([s[k] for s in self.a]), torch.stack([s[k] for s in self.b]), idx)
        try:
            yield
        finally:
            for layer in self.layers:
                layer._route = None


def pad_rows(enc: dict, width: int, pad_id: int) -> dict:
    """A collated batch's rows widened to `width`: the extra columns are padding that no real token attends to
    (packed rows: a block of its own, positions from 0; padded rows: attention mask 0) and carry no loss."""
    n, w = enc["input_ids"].shape
    if w == width:
        return enc
    extra = width - w
    out = {"input_ids": torch.cat([enc["input_ids"], torch.full((n, extra), pad_id, dtype=torch.long)], 1),
           "labels": torch.cat([enc["labels"], torch.full((n, extra), -100, dtype=torch.long)], 1)}
    if "position_ids" in enc:
        out["position_ids"] = torch.cat([enc["position_ids"], torch.arange(extra).expand(n, extra)], 1)
    if "attention_mask" in enc:
        out["attention_mask"] = torch.cat([enc["attention_mask"], torch.zeros((n, extra), dtype=torch.long)], 1)
    return out


def slot_losses(logits: torch.Tensor, labels: torch.Tensor, rows: torch.Tensor, n_slots: int) -> torch.Tensor:
    """Each slot's mean next-token loss over its own target tokens (the loss a model computes on the slot's
    rows alone): shifted cross-entropy per token, summed per slot, divided by the slot's token count."""
    shift = labels[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), shift.reshape(-1),
                         ignore_index=-100, reduction="none").view(shift.shape)
    valid = (shift != -100).to(ce.dtype)
    per_row, count_row = ce.mul(valid).sum(1), valid.sum(1)
    total = torch.zeros(n_slots, dtype=ce.dtype, device=ce.device).index_add_(0, rows, per_row)
    count = torch.zeros(n_slots, dtype=ce.dtype, device=ce.device).index_add_(0, rows, count_row)
    return total / count.clamp_min(1.0)
