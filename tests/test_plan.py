import pytest

from conftest import REPO
from seal_repro.cli import main
from seal_repro.knowledge.plan import plan_knowledge
from seal_repro.spec import load_spec


def test_paper_spec_plan_counts_rounds_and_flops():
    spec = load_spec(REPO / "specs/knowledge/paper-qwen2.5-7b.yaml")
    plan = plan_knowledge(spec)
    rows = {what: amount for what, amount, _ in plan.rows}
    # 200 passages: base, passage, and one self-edit each for base and teacher synthetic (the released results
    # evaluate the first self-edit of each passage once).
    assert rows["inner-loop rounds (all)"] == 200 + 200 + 200 + 200
    assert rows["self-edit generations"] == 200
    assert plan.train_flops == pytest.approx(4 * 7_615_616_512 * plan.train_tokens)


def test_padding_to_max_len_multiplies_training_tokens():
    spec = load_spec(REPO / "specs/knowledge/default.yaml")
    padded = spec.model_copy(update={"inner_loop": spec.inner_loop.model_copy(update={"pad_to_max_len": True})})
    assert plan_knowledge(padded).train_tokens > 5 * plan_knowledge(spec).train_tokens


def test_plan_cli_prints_flops(capsys):
    assert main(["plan", str(REPO / "specs/knowledge/paper-qwen2.5-7b.yaml")]) == 0
    out = capsys.readouterr().out
    assert "training FLOPs" in out and "inner-loop rounds (all)" in out and "800" in out
