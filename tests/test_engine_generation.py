"""Generation speed-ups in the engine leave every output unchanged: a batch's shared prompt prefix is prefilled
once, stop strings end a batch early, and both give the texts the plain path gives. `generate_details` says how
many tokens each answer took and whether max_new_tokens cut it."""

from __future__ import annotations

import string

import pytest
import torch

import seal_repro.engine as engine_mod
from seal_repro.engine import LoraEngine, TrainExample, _cut_is_final, generate_details, train_config
from seal_repro.models import load
from seal_repro.spec.inner_loop import LoraSpec
from seal_repro.spec.model import ModelSpec
from seal_repro.spec.training import TrainingSpec

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
    eng.train([TrainExample(p) for p in PROMPTS], train_config(TrainingSpec(epochs=2, lr=1e-2, batch_size=3)), seed=0)
    return eng


@pytest.fixture
def prefix_calls(monkeypatch):
    calls = []
    real = engine_mod._prefix_cache

    def spy(model, prefix, batch, device, *routing):
        calls.append((len(prefix), batch))
        return real(model, prefix, batch, device, *routing)

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


class _Steered:
    """The engine's model with its next tokens steered per row: row i first writes `rows[i][0]` (token ids), then
    EOS if `rows[i][1]`, else runs freely — but never chooses EOS or padding by itself, so a row ends only where
    the test says (a random model could otherwise stop anywhere)."""

    def __init__(self, model, tokenizer, rows):
        self.model, self.tok, self.rows = model, tokenizer, rows

    def parameters(self):
        return self.model.parameters()

    def generate(self, **kwargs):
        from transformers import LogitsProcessorList

        prompt_len, tok, rows = kwargs["input_ids"].shape[1], self.tok, self.rows

        def steer(input_ids, scores):
            step = input_ids.shape[1] - prompt_len
            for row, (forced, eos) in enumerate(rows):
                scores[row, [tok.eos_token_id, tok.pad_token_id]] = -float("inf")
                if step < len(forced) or (eos and step == len(forced)):
                    scores[row, :] = -float("inf")
                    scores[row, forced[step] if step < len(forced) else tok.eos_token_id] = 0.0
            return scores

        return self.model.generate(**kwargs, logits_processor=LogitsProcessorList([steer]))


# Prompts of different lengths and no shared prefix: one batch, longest prompt first (generate_details sorts them).
SHORT = ["paris is the capital of", "the town was", "the bridge"]
ANSWER = "paris is the capital of france"


def _details(engine, rows, prompts, **kwargs):
    return generate_details(_Steered(engine.peft_model, engine.tokenizer, rows), engine.tokenizer, prompts, **kwargs)


def _ids(engine, text):
    return engine.tokenizer(text, add_special_tokens=False)["input_ids"]


def test_generation_details_report_tokens_and_truncation(engine):
    n = 6
    free = _details(engine, [([], False)] * 3, SHORT, max_new_tokens=n, batch_size=3)
    assert [(g.tokens, g.truncated) for g in free] == [(n, True)] * 3  # every row cut by max_new_tokens
    assert all(g.text for g in free)
    ended = _details(engine, [(_ids(engine, "paris is"), True), ([], True), ([], False)], SHORT, max_new_tokens=n,
                     batch_size=3)
    assert [(g.text, g.tokens, g.truncated) for g in ended[:2]] == [("paris is", 2, False), ("", 0, False)]
    assert (ended[2].text, ended[2].tokens, ended[2].truncated) == (free[2].text, n, True)  # its batch mates' EOS aside
    # an answer that ends with EOS exactly at the limit is not cut by it
    exact = _details(engine, [(_ids(engine, "paris is"), True)], SHORT[:1], max_new_tokens=3)[0]
    assert (exact.text, exact.tokens, exact.truncated) == ("paris is", 2, False)
    cut = _details(engine, [(_ids(engine, "paris is"), True)], SHORT[:1], max_new_tokens=2)[0]
    assert (cut.text, cut.tokens, cut.truncated) == ("paris is", 2, True)  # EOS never came: the limit cut it


def test_generation_details_a_stop_string_is_not_truncation(engine):
    forced = [(_ids(engine, ANSWER), False)]
    assert len(forced[0][0]) == 6
    full = _details(engine, forced, SHORT[:1], max_new_tokens=8)[0]
    assert full.text.startswith(ANSWER) and (full.tokens, full.truncated) == (8, True)
    stopped = _details(engine, forced, SHORT[:1], max_new_tokens=8, stop=("capital",))[0]
    # generation ended with the token that completed the stop string: the 4th
    assert (stopped.text, stopped.tokens, stopped.truncated) == ("paris is the ", 4, False)
    # the stop string completed by the very last token allowed: still an answer that ended, not a cut one
    at_limit = _details(engine, forced, SHORT[:1], max_new_tokens=4, stop=("capital",))[0]
    assert (at_limit.text, at_limit.tokens, at_limit.truncated) == ("paris is the ", 4, False)
    no_stop = _details(engine, forced, SHORT[:1], max_new_tokens=4)[0]
    assert (no_stop.text, no_stop.tokens, no_stop.truncated) == ("paris is the capital", 4, True)


def test_generate_returns_the_texts_of_generate_details(engine):
    details = generate_details(engine.peft_model, engine.tokenizer, SHORT, max_new_tokens=5, batch_size=3)
    assert engine.generate(SHORT, max_new_tokens=5, batch_size=3) == [g.text for g in details]
    assert all(0 <= g.tokens <= 5 and g.truncated == (g.tokens == 5) for g in details)
