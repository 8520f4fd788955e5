"""Cost of a spec before running it: generations, inner-loop rounds, training tokens, FLOPs, time.

FLOP model (per token): LoRA training 4·N (forward 2N + activation gradients 2N; frozen weights get no
weight gradient), full fine-tuning 6·N, generation 2·N. Token counts are estimates from the spec
(passage and answer lengths use typical values when the data is not at hand); they are labelled as such.

This module holds what both domains share (the `Plan` they fill in, the model's parameter count) and imports
no domain; the estimates themselves are `knowledge/plan.py` and `fewshot/plan.py`, and `seal-repro plan`
(`commands/plan.py`) picks one by the spec's domain.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from seal_repro.errors import UserError

# Parameter counts of models the shipped specs name (so `plan` works without downloading configs).
KNOWN_PARAMS = {
    "embedded": 134_515_008,
    "Qwen/Qwen2.5-7B": 7_615_616_512,
    "meta-llama/Llama-3.2-1B-Instruct": 1_235_814_400,
}


@dataclass
class Plan:
    name: str
    params: int
    rows: list[tuple[str, float, str]] = field(default_factory=list)  # (what, amount, unit/note)
    train_tokens: float = 0.0
    train_flops: float = 0.0
    gen_tokens: float = 0.0
    gen_flops: float = 0.0

    def add(self, what: str, amount: float, note: str = "") -> None:
        self.rows.append((what, amount, note))

    @property
    def flops(self) -> float:
        return self.train_flops + self.gen_flops

    def render(self, flops_per_second: float) -> str:
        lines = [f"plan for {self.name} (N = {self.params / 1e6:,.1f}M parameters)"]
        for what, amount, note in self.rows:
            lines.append(f"  {what:<38} {amount:>16,.0f}  {note}")
        lines += [
            f"  {'training tokens':<38} {self.train_tokens:>16,.0f}",
            f"  {'generated + prompt tokens':<38} {self.gen_tokens:>16,.0f}",
            f"  {'training FLOPs':<38} {self.train_flops:>16.3e}",
            f"  {'generation FLOPs':<38} {self.gen_flops:>16.3e}",
            f"  {'total FLOPs':<38} {self.flops:>16.3e}",
            f"  time at {flops_per_second:.3g} FLOP/s: {self.flops / flops_per_second / 3600:,.2f} h "
            f"({self.flops / flops_per_second:,.0f} s)",
        ]
        return "\n".join(lines)


def model_params(model) -> int:
    if model.num_params:
        return model.num_params
    key = "embedded" if model.source == "embedded" else model.id
    if key in KNOWN_PARAMS:
        return KNOWN_PARAMS[key]
    raise UserError(f"model: parameter count of {model.name!r} unknown; set model.num_params for `plan`")
