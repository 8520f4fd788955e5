"""Batched rounds (seal_repro/multilora.py, LoraEngine.train_many): B adapters trained in one forward/backward
per step follow the trajectories they follow alone, and one batched generation answers with each row's adapter."""

from __future__ import annotations

import pytest
import torch

from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.training import TrainingSpec

TEXTS = ["the town was founded in 1874 by settlers", "its mayor is a woman named Ada", "the river flows north",
         "bridges: three", "a long line of facts about the town and its history and its people and its rivers"]
PROMPTS = ["Question: when was the town founded?\nAnswer:", "Question: who is the mayor of the town?\nAnswer:",
           "Question: where does the river flow?\nAnswer:"]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    spec = ModelSpec(source="local", path=str(tiny_model_dir), dtype="float32", device="cpu", chat_template=False)
    model, tok = load(spec, tiny_model_dir)
    return LoraEngine(model, tok, LoraSpec(rank=4, alpha=8, target_modules=("q_proj", "v_proj", "gate_proj")))


def _jobs():  # rounds of different lengths: they leave the batch at different steps
    return [([TrainExample(t) for t in TEXTS[:k]], 100 + k) for k in (2, 3, 5)]


def _weights(engine):
    name = engine.adapter_name
    return [t.detach().clone() for layer in engine.fusable_layers()
            for t in (layer.lora_A[name].weight, layer.lora_B[name].weight)]


@pytest.mark.parametrize("settings", [
    dict(epochs=3, lr=1e-2, batch_size=2),  # packed rows
    dict(epochs=2, lr=1e-2, batch_size=1),  # padded rows
    dict(epochs=3, lr=1e-2, batch_size=2, packing=False),  # padded rows, several sequences per batch
    dict(epochs=2, lr=1e-2, batch_size=2, grad_accum=2, max_grad_norm=0.5, lr_schedule="cosine", warmup_steps=1),
    dict(epochs=4, lr=1e-2, batch_size=2, max_steps=3),
])
def test_batched_rounds_train_each_adapter_as_alone(engine, settings):
    cfg = train_config(TrainingSpec(**settings))
    alone = []
    for examples, seed in _jobs():
        engine.reset(seed)
        stats = engine.train(examples, cfg, seed=seed)
        alone.append((_weights(engine), stats))
    bank, stats = engine.train_many(_jobs(), cfg)
    assert len(bank) == 3
    for b, (weights, solo) in enumerate(alone):
        bank.load(b)
        diff = max((x - y).abs().max().item() for x, y in zip(weights, _weights(engine)))
        assert diff < 1e-5, (b, diff)
        assert stats[b].steps == solo.steps and stats[b].real_tokens == solo.real_tokens
        assert stats[b].losses == pytest.approx(solo.losses, rel=1e-5, abs=1e-6)


def test_slot_adapters_differ_and_the_check_can_fail(engine):
    bank, _ = engine.train_many(_jobs(), train_config(TrainingSpec(epochs=2, lr=1e-2, batch_size=2)))
    bank.load(0)
    first = _weights(engine)
    bank.load(2)
    assert max((x - y).abs().max().item() for x, y in zip(first, _weights(engine))) > 1e-4


def test_one_generation_answers_with_each_rows_adapter(engine):
    bank, _ = engine.train_many(_jobs(), train_config(TrainingSpec(epochs=3, lr=3e-2, batch_size=2)))
    prompts, slots = [], []
    for b in range(len(bank)):
        prompts += PROMPTS
        slots += [b] * len(PROMPTS)
    together = engine.generate(prompts, max_new_tokens=8, bank=bank, slots=slots, batch_size=16)
    alone = []
    for b in range(len(bank)):
        bank.load(b)
        alone += engine.generate(PROMPTS, max_new_tokens=8, batch_size=16)
    assert together == alone
    assert len(set(together)) > 1  # the adapters answer differently: a routing bug could not hide


def test_routing_is_switched_off_after_the_block(engine):
    bank, _ = engine.train_many(_jobs()[:2], train_config(TrainingSpec(epochs=1, lr=1e-2, batch_size=2)))
    with bank.routed([0]):
        assert all(layer._route is not None for layer in engine.fusable_layers())
    assert all(layer._route is None for layer in engine.fusable_layers())
    with pytest.raises(RuntimeError), bank.routed([1]):
        raise RuntimeError("a failing forward")
    assert all(layer._route is None for layer in engine.fusable_layers())
    torch.manual_seed(0)


def test_run_rounds_batched_equals_one_at_a_time_and_keeps_memo_keys(tiny_model_dir, tmp_path):
    """Rounds grouped by executor.rounds_per_batch (trained together, answered by one lm-eval call) give the
    answers and adapters of rounds run one at a time, under the same memo keys."""
    import json

    from seal_repro.data.records import Passage, Question
    from seal_repro.knowledge.inner_loop import KitRecipe, plan_rounds, round_key, run_rounds
    from seal_repro.lmeval.knowledge import LmEvalQA
    from seal_repro.memo import Memo
    from seal_repro.spec.experiment import ExperimentSpec

    passages = [Passage(f"p{i}", f"Town {i}", f"Town {i} was founded in 18{70 + i} by {name}.",
                        (Question(f"p{i}-q0", f"Who founded town {i}?", name),
                         Question(f"p{i}-q1", f"When was town {i} founded?", f"18{70 + i}")))
                for i, name in enumerate(["Ada", "Bo", "Cy", "Di", "Ed"])]
    qfile = tmp_path / "questions.jsonl"
    qfile.write_text("".join(json.dumps({"id": q.id, "passage_id": p.id, "question": q.question, "answer": q.answer,
                                         "golds": [q.answer]}) + "\n" for p in passages for q in p.questions))

    def spec(b):
        return ExperimentSpec.model_validate({
            "model": {"source": "local", "path": str(tiny_model_dir), "dtype": "float32", "device": "cpu",
                      "chat_template": False},
            "inner_loop": {"lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, "epochs": 3,
                           "lr": 3e-2, "batch_size": 2},
            "evaluation": {"answer_prompt": "Question: {question}\nAnswer:", "max_new_tokens": 6, "batch_size": 8},
            "executor": {"kind": "local", "workers": 1, "rounds_per_batch": b}})

    one, three = spec(1), spec(3)
    edits = {p.id: [f"{p.title} is a town.\n{p.context}"] for p in passages}
    rounds = plan_rounds("base_synthetic", passages, edits, one)
    recipe1 = KitRecipe.of(one, tiny_model_dir, qfile, LmEvalQA())
    recipe3 = KitRecipe.of(three, tiny_model_dir, qfile, LmEvalQA())
    assert [round_key(r, one, "fp", recipe1.code) for r in rounds] == \
        [round_key(r, three, "fp", recipe3.code) for r in rounds]  # the executor is in no memo key
    alone = run_rounds(rounds, recipe1(), one, "fp", Memo(enabled=False), first_adapter_dir=tmp_path / "a1")
    together = run_rounds(rounds, recipe3(), three, "fp", Memo(enabled=False), first_adapter_dir=tmp_path / "a3")
    assert [[a["prediction"] for a in r["answers"]] for r in together] == \
        [[a["prediction"] for a in r["answers"]] for r in alone]
    assert [r["train"]["steps"] for r in together] == [r["train"]["steps"] for r in alone]
    from safetensors.torch import load_file

    w1, w3 = load_file(tmp_path / "a1" / "adapter_model.safetensors"), load_file(tmp_path / "a3" / "adapter_model.safetensors")
    assert max((w1[k] - w3[k]).abs().max().item() for k in w1) < 1e-5
