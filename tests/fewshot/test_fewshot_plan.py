"""`plan` for fewshot specs: round counts per condition and the FLOP model."""

from __future__ import annotations

from pathlib import Path

from seal_repro.commands.plan import plan_spec
from seal_repro.spec import load_spec

DEFAULT = Path(__file__).resolve().parents[2] / "specs" / "fewshot" / "default.yaml"


def _rows(plan):
    return {what: amount for what, amount, _ in plan.rows}


def test_default_spec_rounds_and_flops():
    spec = load_spec(DEFAULT)
    plan = plan_spec(spec)
    rows, se = _rows(plan), spec.self_edit
    assert rows["inner-loop rounds: icl"] == 7 and rows["inner-loop rounds: oracle_ttt"] == 7  # 7 evaluation tasks
    assert rows["inner-loop rounds: ttt_no_rl"] == rows["inner-loop rounds: seal"] == 7 * se.n_eval
    assert rows["inner-loop rounds: RL (training tasks)"] == 8 * se.n_train  # 8 training tasks
    assert rows["inner-loop rounds (all)"] == 14 + 14 * se.n_eval + 8 * se.n_train
    assert plan.train_flops == 4 * plan.params * plan.train_tokens
    assert plan.gen_flops == 2 * plan.params * plan.gen_tokens and plan.flops > 0


def test_fewer_conditions_cost_less():
    spec = load_spec(DEFAULT)
    icl_only = plan_spec(spec.model_copy(update={"conditions": ("icl",)}))
    full = plan_spec(spec)
    assert icl_only.train_tokens == 0 and 0 < icl_only.gen_tokens < full.gen_tokens
    assert "inner-loop rounds: RL (training tasks)" not in _rows(icl_only)
