"""The shipped fewshot specs: they validate, say what they reproduce, and the paper spec names the
paper's tasks and protocol."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from seal_repro.spec import load_spec

SPECS = Path(__file__).resolve().parents[2] / "specs" / "fewshot"
SHARED_IDS = Path(__file__).resolve().parents[3] / "shared" / "data" / "seal-arc" / "filtered_task_ids.json"


@pytest.mark.parametrize("name", ["default.yaml", "paper-llama-3.2-1b.yaml"])
def test_spec_validates_and_opens_with_its_table_and_command(name):
    path = SPECS / name
    spec = load_spec(path)
    head = path.read_text().splitlines()[:8]
    assert head[0].startswith("# ") and "Table 1" in head[0]
    assert any("Run:" in line and "fewshot_report" in line for line in head)
    assert spec.domain == "fewshot" and spec.conditions == ("icl", "ttt_no_rl", "seal", "oracle_ttt")


def test_paper_spec_is_the_paper_protocol():
    s = load_spec(SPECS / "paper-llama-3.2-1b.yaml")
    assert (s.model.source, s.model.id, s.model.dtype, s.model.device) == (
        "hf", "meta-llama/Llama-3.2-1B-Instruct", "bfloat16", "cuda")
    lora = s.inner_loop.lora
    assert (lora.rank, lora.alpha, set(lora.target_modules)) == (128, 16.0, {"q_proj", "v_proj", "gate_proj",
                                                                               "down_proj", "up_proj"})
    assert (s.inner_loop.batch_size, s.self_edit.n_train, s.self_edit.n_eval) == (2, 15, 5)
    sft = s.rl.sft
    assert (sft.lora.rank, sft.lora.alpha, sft.lr, sft.epochs) == (16, 16.0, 5e-5, 8)
    assert (len(s.tasks.train.ids), len(s.tasks.eval.ids)) == (12, 10)


def test_paper_spec_ids_match_the_reference_file():
    if not SHARED_IDS.exists():
        pytest.skip("../shared is not here (it never is on a user's machine)")
    s = load_spec(SPECS / "paper-llama-3.2-1b.yaml")
    ref = json.loads(SHARED_IDS.read_text())
    assert list(s.tasks.train.ids) == ref["train"] and list(s.tasks.eval.ids) == ref["eval"]
