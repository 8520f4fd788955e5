"""Fixtures for the few-shot tests: a tiny random Llama (2 layers, width 64) with a character-level
tokenizer, both built in-process and saved to a temporary folder, and a small spec that uses it.

Not the shared tiny model of tests/conftest.py: its word-level tokenizer drops newlines and joins
tokens with spaces, so it cannot write an ARC grid (rows of digits separated by newlines).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_repro.fewshot.tasks import Task

# Every character the prompts use; one token each, so grids tokenize the way SmolLM2's do.
CHARS = [chr(i) for i in range(32, 127)] + ["\n"]
SPECIALS = ["<unk>", "<pad>", "<eos>"]


def build_arc_model(folder: Path) -> Path:
    import torch
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(SPECIALS + CHARS)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    tok = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="<unk>", pad_token="<pad>", eos_token="<eos>")
    config = LlamaConfig(
        vocab_size=len(vocab), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=2048, pad_token_id=1, eos_token_id=2, bos_token_id=None,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def arc_model_dir(tmp_path_factory) -> Path:
    return build_arc_model(tmp_path_factory.mktemp("tiny-arc-llama"))


@pytest.fixture(scope="session")
def tiny_spec(arc_model_dir):
    """A fewshot spec on the tiny model, sized for tests: few examples, 2 steps, short answers."""
    from seal_repro.spec.fewshot import FewShotSpec

    return FewShotSpec.model_validate({
        "model": {"source": "local", "path": str(arc_model_dir), "chat_template": False},
        "tasks": {"train": {"split": "train", "ids": ["25ff71a9"]}, "eval": {"split": "eval", "ids": ["66e6c45b"]}},
        "self_edit": {"sampling": {"temperature": 1.0, "max_new_tokens": 12}, "n_train": 2, "n_eval": 2},
        "inner_loop": {"lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, "batch_size": 2,
                       "max_examples": 4, "max_steps": 2, "max_seq_len": 2048},
        "rl": {"sft": {"lora": {"rank": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj"]}, "lr": 1e-2,
                       "epochs": 2, "batch_size": 2}},
        "evaluation": {"max_new_tokens": 8, "vote_families": ["basic"], "bootstrap_resamples": 200},
    })


@pytest.fixture
def tiny_loaded(tiny_spec, arc_model_dir):
    """(model, tokenizer) freshly loaded: a LoraEngine wraps its model in place, so tests get their own."""
    from seal_repro import models

    return models.load(tiny_spec.model, arc_model_dir)


# rule: mirror left-right; three demonstrations so leave-two-out applies
def _flip(g):
    return tuple(tuple(reversed(r)) for r in g)


TASK = Task(
    "0000abcd",
    train=tuple((g, _flip(g)) for g in [((1, 2), (0, 3)), ((4, 0), (5, 6)), ((7, 8), (9, 0))]),
    test=((((1, 0), (2, 3)), _flip(((1, 0), (2, 3)))),),
)


@pytest.fixture
def task() -> Task:
    return TASK
