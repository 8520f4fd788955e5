"""Shared fixtures: a tiny random Llama (2 layers, width 64) with an in-process tokenizer, saved as an HF folder.

No network, no weights from a hub: the tokenizer is a word-level vocabulary built here, so every test that
needs "a model" runs in seconds.
"""

from __future__ import annotations

import os
import string
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

_WORDS = (
    "the a an of in on at to is was by and or for with from who what which when where how many year town river "
    "bridge founded built opened answer question passage short phrase paris france capital war world end "
).split()


def build_tiny_model(path: Path, seed: int = 0, hidden_size: int = 64) -> Path:
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    vocab = {t: i for i, t in enumerate(specials)}
    for tok in list(string.ascii_letters + string.digits + string.punctuation) + _WORDS:
        vocab.setdefault(tok, len(vocab))
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    # Split into words and single punctuation/digit characters, keeping spaces as part of nothing (decoded with spaces).
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(),
                                                pre_tokenizers.Digits(individual_digits=True)])
    tk.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    fast = PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>")
    fast.chat_template = "{% for m in messages %}<s>{{ m['content'] }}</s>{% endfor %}{% if add_generation_prompt %}<s>{% endif %}"
    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=3, tie_word_embeddings=True)
    model = LlamaForCausalLM(config)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    fast.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared is not present (it exists only on the project's own machines)")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    # Tiny models gain nothing from threads, and oversubscribed cores slow torch down many-fold.
    import torch

    torch.set_num_threads(1)
    os.environ["SEAL_REPRO_THREADS"] = "1"


def kit_of(engine, score, code: str = "test"):
    """A knowledge-domain Kit (seal_repro.knowledge.inner_loop) from a LoraEngine and a plain scoring function
    `score(question_ids) -> answers`, for tests that compute rounds without lm-eval."""
    from types import SimpleNamespace

    from seal_repro.knowledge.inner_loop import Kit

    return Kit(engine, SimpleNamespace(score=score, version=None), code=code)


def inner_loop_spec(**inner_loop):
    """An ExperimentSpec (no chat template) whose inner loop trains with the given settings (e.g. epochs, lr)."""
    from seal_repro.spec.experiment import ExperimentSpec

    return ExperimentSpec.model_validate({"model": {"chat_template": False}, "inner_loop": inner_loop})
