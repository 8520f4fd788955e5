"""Packed and padded layouts: the same loss, the same gradients, no attention across sequences."""

import pytest
import torch

from seal_repro.batching import PACK_ROW_TOKENS, collate_packed, collate_padded, pack_rows, random_batches
from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.training import TrainingSpec

TEXTS = ["the town was founded in 1874 by a river", "the bridge was built in 1901", "paris is the capital of france",
         "who built the bridge ?", "the war was in the year 1945 and the town was built by the river in 1874"]


@pytest.fixture
def engine(tiny_model_dir):
    torch.manual_seed(0)
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    eng = LoraEngine(model, tok, LoraSpec(rank=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj")))
    eng.reset(3)
    with torch.no_grad():  # a non-zero adapter, so the LoRA path is part of what must agree
        for p in eng.trainable:
            p.normal_(0, 0.1)
    return eng


def _loss_and_grads(engine, enc):
    engine.peft_model.zero_grad(set_to_none=True)
    loss = engine.peft_model(**enc, use_cache=False).loss
    loss.backward()
    return loss.item(), [p.grad.clone() for p in engine.trainable]


def test_packed_batch_gives_the_padded_loss_and_gradients(engine):
    cfg = train_config(TrainingSpec())
    batch = [engine._encode(TrainExample(t), cfg) for t in TEXTS]
    assert engine.packing_supported()
    padded = _loss_and_grads(engine, engine._collate(batch, cfg, packed=False))
    packed_enc = engine._collate(batch, cfg, packed=True)
    assert packed_enc["input_ids"].shape[0] < len(TEXTS)  # really packed: fewer rows than sequences
    packed = _loss_and_grads(engine, packed_enc)
    assert packed[0] == pytest.approx(padded[0], rel=1e-5)
    for a, b in zip(packed[1], padded[1]):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_packing_probe_falls_back_when_attention_leaks(engine, monkeypatch):
    forward = engine.peft_model.forward

    def no_positions(*args, position_ids=None, **kwargs):  # a model that ignores restarting positions
        return forward(*args, **kwargs)

    monkeypatch.setattr(engine.peft_model, "forward", no_positions)
    assert not engine.packing_supported()
    cfg = train_config(TrainingSpec(epochs=1, batch_size=4))
    stats = engine.train([TrainExample(t) for t in TEXTS], cfg, seed=0)
    assert not stats.packed and stats.steps == 2  # trained, on padded rows


def test_training_packs_and_counts_every_token_once(engine):
    examples = [TrainExample(t) for t in TEXTS]
    stats = engine.train(examples, train_config(TrainingSpec(epochs=3, batch_size=4, lr=1e-2)), seed=1)
    n_tokens = sum(len(engine._encode(ex, train_config(TrainingSpec()))[0]) for ex in examples)
    assert stats.packed and stats.steps == 6  # ceil(5 / 4) batches per epoch: no early-closed batches
    assert stats.real_tokens == 3 * n_tokens and stats.slot_tokens >= stats.real_tokens
    cfg = train_config(TrainingSpec(epochs=3, batch_size=4, lr=1e-2, packing=False))
    padded = engine.train(examples, cfg, seed=1)
    assert not padded.packed and padded.slot_tokens > stats.slot_tokens


def test_pack_rows_places_every_sequence_once_in_balanced_rows():
    lengths = [140, 17, 15, 22, 19, 30, 12, 140, 5, 60, 41, 33]
    rows = pack_rows(lengths)
    assert sorted(i for r in rows for i in r) == list(range(len(lengths)))
    loads = [sum(lengths[i] for i in r) for r in rows]
    assert len(rows) == max(1, round(sum(lengths) / PACK_ROW_TOKENS))  # rows near the target length
    assert max(loads) - min(loads) <= max(lengths[i] for r in rows for i in r[1:])  # rows of about equal length
    assert pack_rows([3, 4, 5]) == [[2, 1, 0]]  # short lines share one row
    assert len(pack_rows([2 * PACK_ROW_TOKENS, 10, 10])) == 1  # a long sequence sets the row length
    assert len(pack_rows([2 * PACK_ROW_TOKENS] * 3 + [10])) == 3


def test_collate_packed_restarts_positions_and_drops_each_first_label():
    batch = [([5, 6, 7], [5, 6, 7]), ([8, 9], [8, 9])]
    enc = collate_packed(batch, pad_id=0)
    assert enc["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert enc["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    assert enc["labels"].tolist() == [[-100, 6, 7, -100, 9]]  # the same targets as the padded rows' shifted loss
    assert "attention_mask" not in enc
    padded = collate_padded(batch, pad_id=0)
    targets = padded["labels"][:, 1:]
    assert int((targets != -100).sum()) == int((enc["labels"] != -100).sum())


def test_random_batches_keep_batch_size():
    batches = random_batches(10, 4, torch.Generator().manual_seed(0))
    assert sorted(map(len, batches)) == [2, 4, 4] and sorted(sum(batches, [])) == list(range(10))
