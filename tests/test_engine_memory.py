"""Fitting training in memory (issue 19): micro-batches whose gradients add up to the full batch's, automatic
micro-batching on out-of-memory errors, gradient checkpointing (same losses), the LoRA factors' dtype."""

from __future__ import annotations

import pytest
import torch

from seal_repro.engine import LoraEngine, TrainExample, train_config
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.training import TrainingSpec

TEXTS = ["the town was founded in 1874 by a river", "the bridge was built in 1901", "paris is the capital of france",
         "the war ended in the year 1918 and the world changed", "a short river", "who built the bridge and when ?"]
LORA = LoraSpec(rank=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj"))


def _engine(model_dir, dtype="float32", lora_dtype="float32"):
    spec = ModelSpec(source="local", path=str(model_dir), dtype=dtype, lora_dtype=lora_dtype, chat_template=False)
    model, tok = load(spec, model_dir)
    return LoraEngine(model, tok, LORA)


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return _engine(tiny_model_dir)


def _weights(engine):
    return [p.detach().clone() for p in engine.trainable]


def _train(engine, seed=3, examples=TEXTS, **settings):
    engine.reset(seed)
    stats = engine.train([TrainExample(t) for t in examples], train_config(TrainingSpec(**settings)), seed=seed)
    return stats, _weights(engine)


def _first_step_grads(engine, **settings):
    """The trained tensors' gradients as the optimizer sees them at the first step."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append([p.grad.clone() for g in opt.param_groups for p in g["params"]]))
    try:
        _train(engine, **settings)
    finally:
        handle.remove()
    return seen[0]


def _max_diff(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))


LAYOUTS = [dict(packing=True), dict(packing=False), dict(pad_to_max_len=True, max_seq_len=24)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["packed", "padded", "reference-padded"])
def test_micro_batches_give_the_full_batch_gradients(engine, layout):
    full = _first_step_grads(engine, epochs=1, batch_size=6, lr=1e-2, **layout)
    for size in (1, 2, 4):
        micro = _first_step_grads(engine, epochs=1, batch_size=6, lr=1e-2, micro_batch_size=size, **layout)
        scale = max(float(g.abs().max()) for g in full)
        assert scale > 0 and _max_diff(full, micro) <= 1e-5 * scale, (size, _max_diff(full, micro), scale)


def test_micro_batches_train_the_same_adapter_and_report_the_same_losses(engine):
    settings = dict(epochs=3, batch_size=4, grad_accum=2, lr=1e-2, max_grad_norm=0.5, lr_schedule="cosine")
    full_stats, full = _train(engine, **settings)
    micro_stats, micro = _train(engine, micro_batch_size=1, **settings)
    assert _max_diff(full, micro) < 1e-5
    assert micro_stats.steps == full_stats.steps and micro_stats.real_tokens == full_stats.real_tokens
    assert micro_stats.losses == pytest.approx(full_stats.losses, rel=1e-5)  # the batch's mean, not a pass's


def test_micro_batches_in_batched_rounds_match(engine):
    jobs = [([TrainExample(t) for t in TEXTS[:k]], 10 + k) for k in (3, 6)]
    cfg = dict(epochs=2, batch_size=3, lr=1e-2, max_grad_norm=1.0)

    def adapters(**extra):
        bank, stats = engine.train_many(jobs, train_config(TrainingSpec(**cfg, **extra)))
        out = []
        for b in range(len(jobs)):
            bank.load(b)
            out.append(_weights(engine))
        return out, stats

    full, full_stats = adapters()
    for size in (1, 2):
        micro, micro_stats = adapters(micro_batch_size=size)
        for b in range(len(jobs)):
            assert _max_diff(full[b], micro[b]) < 1e-5, (size, b)
            assert micro_stats[b].losses == pytest.approx(full_stats[b].losses, rel=1e-5)


class _OutOfMemoryAbove:
    """Wraps the model's forward: raises torch.OutOfMemoryError for a pass of more than `limit` tokens (the
    accelerator running out), and records the tokens of every pass it lets through."""

    def __init__(self, engine, limit: int):
        self.engine, self.limit, self.passes, self.refused = engine, limit, [], 0
        self.forward = engine.peft_model.forward

    def __enter__(self):
        def forward(*args, **kwargs):
            tokens = kwargs["input_ids"].numel()
            if tokens > self.limit:
                self.refused += 1
                raise torch.OutOfMemoryError(f"simulated: {tokens} tokens")
            self.passes.append(tokens)
            return self.forward(*args, **kwargs)

        self.engine.peft_model.forward = forward
        return self

    def __exit__(self, *exc):
        del self.engine.peft_model.forward  # back to the class's forward


def test_automatic_micro_batching_halves_on_out_of_memory_and_remembers(tiny_model_dir):
    engine = _engine(tiny_model_dir)
    settings = dict(epochs=2, batch_size=6, lr=1e-2, packing=False)
    _, reference = _train(engine, **settings)
    engine._fit_sequences = None
    with _OutOfMemoryAbove(engine, limit=40) as oom:
        _, fitted = _train(engine, **settings)
    assert oom.refused >= 1 and engine._fit_sequences < 6
    assert max(oom.passes) <= 40
    assert _max_diff(reference, fitted) < 1e-5
    refused = oom.refused
    with _OutOfMemoryAbove(engine, limit=40) as oom:  # the size that fits is remembered: no new refusal
        _train(engine, **settings)
    assert oom.refused == 0 and refused >= 1
    with _OutOfMemoryAbove(engine, limit=40), pytest.raises(torch.OutOfMemoryError):
        _train(engine, micro_batch_size=6, **settings)  # a fixed micro_batch_size is not second-guessed


def test_an_out_of_memory_error_midway_through_a_step_restores_the_gradients(tiny_model_dir):
    """The failed pass had already added some gradients (accumulation, and its own first passes): the retry starts
    from the gradients as they were before the batch, so the result equals the full batch's."""
    engine = _engine(tiny_model_dir)
    settings = dict(epochs=1, batch_size=6, grad_accum=2, lr=1e-2, packing=False, lr_schedule="constant")
    _, reference = _train(engine, examples=TEXTS * 2, **settings)
    engine._fit_sequences = 3  # two passes a batch; the second pass of the second batch runs out of memory
    calls = {"n": 0}
    forward = engine.peft_model.forward

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise torch.OutOfMemoryError("simulated")
        return forward(*args, **kwargs)

    engine.peft_model.forward = flaky
    try:
        _, fitted = _train(engine, examples=TEXTS * 2, **settings)
    finally:
        del engine.peft_model.forward
    assert engine._fit_sequences == 1 and calls["n"] > 4
    # Float rounding (passes of 3, then 1, against one of 6) through AdamW's normalisation; a pass's gradient
    # counted twice would move the adapter by ~lr = 1e-2.
    assert _max_diff(reference, fitted) < 1e-4


class _LayerCalls:
    """Counts runs of the first decoder layer's MLP forward: its module hooks do not run again when the backward
    recomputes the layer, its forward does."""

    def __init__(self, engine):
        self.mlp, self.calls = engine.base_model.model.layers[0].mlp, []

    def __enter__(self):
        forward = self.mlp.forward
        self.mlp.forward = lambda *a, **k: (self.calls.append(1), forward(*a, **k))[1]
        return self.calls

    def __exit__(self, *exc):
        del self.mlp.forward


def test_gradient_checkpointing_recomputes_and_gives_the_same_losses(engine):
    settings = dict(epochs=3, batch_size=2, lr=1e-2)
    engine.packing_supported()  # checked once per engine, with forwards of its own: not in the counts below
    try:
        with _LayerCalls(engine) as calls:
            plain_stats, plain = _train(engine, **settings)
            plain_calls = len(calls)
            calls.clear()
            ckpt_stats, ckpt = _train(engine, gradient_checkpointing=True, **settings)
    finally:
        engine.set_checkpointing(False)
    assert len(calls) == 2 * plain_calls  # every layer's forward ran again in the backward
    assert ckpt_stats.losses == pytest.approx(plain_stats.losses, rel=1e-6)
    assert _max_diff(plain, ckpt) < 1e-6
    # batched rounds route each row through its own adapter also while the backward recomputes
    jobs = [([TrainExample(t) for t in TEXTS[:k]], k) for k in (2, 4)]
    banks = {}
    for on in (False, True):
        bank, stats = engine.train_many(jobs, train_config(TrainingSpec(gradient_checkpointing=on, **settings)))
        banks[on] = [(bank.load(b), _weights(engine))[1] for b in range(len(jobs))], [x for s in stats for x in s.losses]
    engine.set_checkpointing(False)
    assert banks[True][1] == pytest.approx(banks[False][1], rel=1e-6)
    assert all(_max_diff(a, b) < 1e-6 for a, b in zip(banks[True][0], banks[False][0]))


def test_lora_factors_take_the_dtype_the_spec_chooses(tiny_model_dir):
    def dtypes(engine):
        return {p.dtype for p in engine.trainable}

    assert dtypes(_engine(tiny_model_dir, dtype="bfloat16")) == {torch.float32}  # default: float32 factors
    assert dtypes(_engine(tiny_model_dir, dtype="bfloat16", lora_dtype="model")) == {torch.bfloat16}
    assert dtypes(_engine(tiny_model_dir, dtype="float32", lora_dtype="bfloat16")) == {torch.bfloat16}
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), dtype="bfloat16", chat_template=False),
                      tiny_model_dir)
    assert dtypes(LoraEngine(model, tok, LORA, lora_dtype="float16")) == {torch.float16}  # an explicit choice wins
    assert ModelSpec(chat_template=False).lora_dtype == "float32"


def test_float32_factors_on_bfloat16_weights_train_alone_and_batched(tiny_model_dir):
    """Each path takes the factors' dtype: the single round (PEFT's forward casts to the factors' dtype) and the
    batched rounds (multilora's routed forward) give the same adapters."""
    engine = _engine(tiny_model_dir, dtype="bfloat16")
    settings = dict(epochs=2, batch_size=2, lr=1e-2)
    jobs = [([TrainExample(t) for t in TEXTS[:k]], k) for k in (2, 3)]
    alone = []
    for examples, seed in jobs:
        engine.reset(seed)
        engine.train(examples, train_config(TrainingSpec(**settings)), seed=seed)
        alone.append(_weights(engine))
    bank, stats = engine.train_many(jobs, train_config(TrainingSpec(**settings)))
    for b, weights in enumerate(alone):
        bank.load(b)
        assert all(w.dtype == torch.float32 for w in _weights(engine))
        assert _max_diff(weights, _weights(engine)) < 2e-2  # bfloat16 activations: the two paths round apart
        assert all(torch.isfinite(torch.tensor(stats[b].losses)))
