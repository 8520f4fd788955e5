"""`seal-repro plan` for the SEAL paper specs: the RL, CPT and continual costs."""

import pytest

from conftest import REPO
from seal_repro.cli import main
from seal_repro.knowledge.plan import plan_knowledge
from seal_repro.spec import load_spec

SPECS = REPO / "specs/knowledge"


def _rows(name: str) -> dict:
    return {what: amount for what, amount, _ in plan_knowledge(load_spec(SPECS / name)).rows}


def test_rl_plan_counts_generations_rounds_and_flops():
    base, rl = plan_knowledge(load_spec(SPECS / "paper-qwen2.5-7b.yaml")), plan_knowledge(load_spec(SPECS / "paper-qwen2.5-7b-rl.yaml"))
    rows = {what: amount for what, amount, _ in rl.rows}
    assert rows["RL: self-edit generations (2 it.)"] == 2 * 50 * 5
    assert rows["RL: inner-loop rounds"] == 2 * 50 * 5 * 3 + 2 * 50  # 3 repeats per self-edit, + unadapted baseline
    # SEAL is evaluated as the reference's released evaluations: one self-edit per passage, one round each
    assert rows["SEAL eval: self-edit generations"] == 2 * 200 * 1 and rows["SEAL eval: inner-loop rounds"] == 400
    assert rows["inner-loop rounds (all)"] == 800  # the baseline table's count is unchanged: 4 conditions x 200
    assert rl.train_flops > base.train_flops and rows["RL: TFLOPs (train + generation)"] > 0


def test_cpt_and_continual_rows():
    cpt = _rows("paper-qwen2.5-7b-cpt.yaml")
    assert cpt["CPT: questions answered"] == 5 * 200 * 5 and cpt["CPT: training tokens (lora)"] > 0
    cont = _rows("paper-qwen2.5-7b-continual.yaml")
    assert cont["continual: edits (generate + train + merge)"] == 64 * 8  # 8 runs x 8 sequences, 8 edits each
    assert cont["continual: questions answered"] == 64 * (8 + 36) * 5


def test_full_fine_tuning_costs_more_flops_than_lora():
    spec = load_spec(SPECS / "paper-qwen2.5-7b-cpt.yaml")
    full = spec.model_copy(update={"cpt": spec.cpt.model_copy(update={"method": "full", "lora": None})})
    assert plan_knowledge(full).train_flops == pytest.approx(
        plan_knowledge(spec).train_flops + 2 * 7_615_616_512 * _rows("paper-qwen2.5-7b-cpt.yaml")["CPT: training tokens (lora)"])


def test_plan_cli_prints_the_rl_cost(capsys):
    assert main(["plan", str(SPECS / "paper-qwen2.5-7b-rl.yaml")]) == 0
    out = capsys.readouterr().out
    assert "RL: self-edit generations" in out and "RL: inner-loop rounds" in out and "1,600" in out
