"""The adapter really applied: before an adapted model is scored, a probe compares its logits with the base
model's; an adapter that changed nothing fails the round (and so the stage) with a message saying so."""

from __future__ import annotations

import pytest
import torch

from seal_repro.data.records import Passage, Question
from conftest import inner_loop_spec, kit_of
from seal_repro.engine import LoraEngine, TrainStats
from seal_repro.errors import AdapterNotApplied
from seal_repro.knowledge.inner_loop import Job, Round, compute_round
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec

PASSAGE = Passage("p-1", "Quorvel", "the bridge was built in 1901 by the river",
                  (Question("p-1-q0", "when was the bridge built", "1901"),))
ROUND = Round("passage", PASSAGE, 0, None, 0, ("the bridge was built in 1901 by the river",) * 2)
JOB = Job(ROUND, inner_loop_spec(epochs=1, lr=1e-2))


@pytest.fixture
def engine(tiny_model_dir):
    torch.manual_seed(0)
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    return LoraEngine(model, tok, LoraSpec(rank=4, alpha=8, target_modules=("q_proj", "v_proj")))


def test_an_adapter_that_changes_the_logits_is_scored(engine):
    asked = []
    result = compute_round(kit_of(engine, lambda ids: asked.append(ids) or []), JOB)
    assert asked == [["p-1-q0"]] and result["train"]["steps"] >= 1


def test_an_adapter_that_changes_nothing_fails_before_scoring(engine, monkeypatch):
    monkeypatch.setattr(engine, "train", lambda *a, **k: TrainStats())  # "trained", but the adapter is still B = 0
    asked = []
    with pytest.raises(AdapterNotApplied, match=r"adapter for passage p-1 \(passage\) left the model's logits unchanged"):
        compute_round(kit_of(engine, lambda ids: asked.append(ids) or []), JOB)
    assert asked == []  # never scored as if it were adapted
