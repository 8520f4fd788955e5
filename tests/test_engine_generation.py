"""Generation speed-ups in the engine leave every output unchanged: a batch's shared prompt prefix is prefilled
once, stop strings end a batch early, and both give the texts the plain path gives."""

from __future__ import annotations

import string

import pytest
import torch

import seal_repro.engine as engine_mod
from seal_repro.engine import LoraEngine, TrainConfig, TrainExample, _cut_is_final
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec

PREFIX = "answer the question with a short phrase . question : what is the capital of france ? answer : paris . "
PROMPTS = [PREFIX + q for q in ("question : when was the town founded ? answer :",
                                "question : who built the bridge ? answer :",
                                "question : what river ? answer :")]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    torch.manual_seed(0)
    model, tok = load(ModelSpec(source="local", path=str(tiny_model_dir), chat_template=False), tiny_model_dir)
    eng = LoraEngine(model, tok, LoraSpec(rank=4, alpha=8, target_modules=("q_proj", "v_proj", "down_proj")))
    eng.reset(0)
    eng.train([TrainExample(p) for p in PROMPTS], TrainConfig(epochs=2, lr=1e-2, batch_size=3), seed=0)
    return eng


@pytest.fixture
def prefix_calls(monkeypatch):
    calls = []
    real = engine_mod._prefix_cache

    def spy(model, prefix, batch, device):
        calls.append((len(prefix), batch))
        return real(model, prefix, batch, device)

    monkeypatch.setattr(engine_mod, "_prefix_cache", spy)
    return calls


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_shared_prefix_is_prefilled_once_with_identical_outputs(engine, prefix_calls, monkeypatch, temperature):
    kw = dict(max_new_tokens=6, temperature=temperature, seed=5)
    shared = engine.generate(PROMPTS, batch_size=3, **kw)
    assert prefix_calls and prefix_calls[0][1] == 3 and prefix_calls[0][0] >= engine_mod.MIN_SHARED_PREFIX
    monkeypatch.setattr(engine_mod, "MIN_SHARED_PREFIX", 10**9)  # the plain path: every prompt prefilled whole
    assert engine.generate(PROMPTS, batch_size=3, **kw) == shared
    if temperature == 0.0:
        assert [engine.generate([p], batch_size=1, **kw)[0] for p in PROMPTS] == shared


def test_k_copies_of_one_prompt_share_all_but_its_last_token(engine, prefix_calls):
    n_tokens = len(engine.tokenizer(PROMPTS[0], add_special_tokens=False)["input_ids"])
    out = engine.generate([PROMPTS[0]] * 4, max_new_tokens=5, temperature=1.0, seed=2, batch_size=4)
    assert prefix_calls == [(n_tokens - 1, 4)] and len(out) == 4


def test_short_or_unrelated_prompts_take_the_plain_path(engine, prefix_calls):
    engine.generate(["the town was", "paris is the capital of"], max_new_tokens=3, batch_size=2)
    assert prefix_calls == []


def test_stop_strings_end_generation_early_with_the_same_text(engine):
    steps = []
    hook = engine.base_model.register_forward_hook(lambda *a: steps.append(1))
    try:
        full = engine.generate(PROMPTS, max_new_tokens=12, batch_size=3)
        n_full = len(steps)
        # Stop strings the random model surely produces early: its first words, and any letter.
        stop = (" ".join(full[0].split()[1:3]), *string.ascii_lowercase)
        assert all(any(s in t[: len(t) // 2] for s in stop) for t in full)
        steps.clear()
        early = engine.generate(PROMPTS, max_new_tokens=12, batch_size=3, stop=stop)
    finally:
        hook.remove()

    def cut(text):
        for s in stop:
            if s in text:
                text = text[: text.index(s)]
        return text

    assert early == [cut(t) for t in full]
    assert len(steps) < n_full


@pytest.mark.parametrize("text, stop, final", [
    ("ab", ("\n",), False), ("ab\ncd", ("\n",), True),
    ("xc", ("xcy", "c"), False),  # "xcy" may still complete, and it would cut earlier than "c"
    ("xcy", ("xcy", "c"), True), ("a\nb", ("\n", "bz"), True),
])
def test_cut_is_final(text, stop, final):
    assert _cut_is_final(text, stop) is final
