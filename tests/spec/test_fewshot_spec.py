import pytest
import yaml
from pydantic import ValidationError

from seal_repro.fewshot.self_edit import parse_self_edit
from seal_repro.spec.fewshot import DEFAULT_ORACLE, FewShotSpec

MODEL = {"chat_template": False}


def spec(**sections):
    return FewShotSpec(model=MODEL, **sections)


def test_defaults_are_the_paper_protocol_on_small_tasks():
    s = spec()
    assert s.domain == "fewshot" and s.conditions == ("icl", "ttt_no_rl", "seal", "oracle_ttt")
    assert (s.self_edit.n_train, s.self_edit.n_eval, s.evaluation.n_attempts) == (15, 5, 2)
    lora = s.inner_loop.lora
    assert (lora.rank, lora.alpha, s.inner_loop.batch_size, s.inner_loop.max_steps) == (128, 16.0, 2, 375)
    assert s.inner_loop.lr_schedule == "cosine"
    assert (s.tasks.train.split, s.tasks.eval.split) == ("train", "eval")
    assert s.oracle == DEFAULT_ORACLE and s.oracle.families == ("basic", "size", "chain", "repeat")


def test_paper_spec_from_yaml():
    text = """
domain: fewshot
protocol: SEAL Table 1 (few-shot ARC)
model: {source: hf, id: meta-llama/Llama-3.2-1B-Instruct, chat_template: true}
tasks:
  train: {split: train, ids_file: ../shared/data/seal-arc/filtered_task_ids.json}
  eval: {split: eval, ids_file: ../shared/data/seal-arc/filtered_task_ids.json}
oracle:
  augmentations: {basic: true, size: false, chain: true, repeat: true}
  training: {loss_on: all_tokens, learning_rate: 1e-4, epochs: 3}
conditions: [icl, seal]
"""
    s = FewShotSpec.model_validate(yaml.safe_load(text))
    assert s.oracle.training.learning_rate == 1e-4  # YAML reads 1e-4 as a string; the spec accepts it
    assert s.conditions == ("icl", "seal")
    assert parse_self_edit(s.oracle.to_json()).self_edit == s.oracle


def test_unknown_key_rejected():
    with pytest.raises(ValidationError, match="Extra inputs"):
        spec(inner_loop={"learning_rate": 1e-4})
    for old in ("default_lr", "default_epochs", "default_loss_on"):  # renamed lr, epochs, loss_on
        with pytest.raises(ValidationError, match=f"inner_loop.{old}\n  Extra inputs"):
            spec(inner_loop={old: 1})


def test_inner_loop_is_training_settings_whose_lr_epochs_loss_are_a_self_edits_defaults():
    from seal_repro.spec.training import TrainingSpec

    il = spec(inner_loop={"lr": 2e-3, "epochs": 4, "loss_on": "all_tokens", "max_grad_norm": 1.0,
                          "warmup_ratio": 0.1}).inner_loop
    assert isinstance(il, TrainingSpec) and (il.max_grad_norm, il.warmup_ratio) == (1.0, 0.1)
    assert (il.lr, il.epochs, il.loss_on) == (2e-3, 4, "all_tokens")
    d = spec().inner_loop
    assert (d.lr, d.epochs, d.loss_on, d.max_grad_norm, d.max_seq_len) == (1e-4, 2, "output_tokens", None, 8192)
    sft = spec().rl.sft  # the policy's SFT: training settings too, its own defaults
    assert isinstance(sft, TrainingSpec) and (sft.lr, sft.epochs, sft.batch_size, sft.grad_accum) == (5e-5, 8, 5, 1)


# (sections that break a rule, message) paired with (the nearest sections that pass)
RULES = [
    (
        {"tasks": {"train": {"split": "train", "ids": ["6150a2bd"], "n": 3}}},
        "give exactly one of ids, ids_file, n",
        {"tasks": {"train": {"split": "train", "ids": ["6150a2bd"]}}},
    ),
    (
        {"tasks": {"train": {"split": "train"}}},
        "got none",
        {"tasks": {"train": {"split": "train", "n": 2}}},
    ),
    (
        {"tasks": {"train": {"split": "train", "ids": ["6150a2bd"], "max_cells": 30}}},
        "max_cells only filters a selection by n",
        {"tasks": {"train": {"split": "train", "n": 1, "max_cells": 30}}},
    ),
    (
        {"tasks": {"train": {"split": "train", "ids": ["6150A2BD"]}}},
        "not 8-hex-digit",
        {"tasks": {"train": {"split": "train", "ids": ["6150a2bd"]}}},
    ),
    (
        {"tasks": {"train": {"split": "train", "ids": ["6150a2bd", "6150a2bd"]}}},
        "listed twice",
        {"tasks": {"train": {"split": "train", "ids": ["6150a2bd"]}}},
    ),
    (
        {"tasks": {"train": {"split": "eval", "ids": ["358ba94e"]}, "eval": {"split": "eval", "ids": ["358ba94e", "59341089"]}}},
        "tasks.train.ids and tasks.eval.ids overlap: 358ba94e",
        {"tasks": {"train": {"split": "eval", "ids": ["66e6c45b"]}, "eval": {"split": "eval", "ids": ["358ba94e", "59341089"]}}},
    ),
    (
        {"tasks": {"train": {"split": "eval", "n": 3}, "eval": {"split": "eval", "n": 3}}},
        "both draw from split 'eval'",
        {"tasks": {"train": {"split": "train", "n": 3}, "eval": {"split": "eval", "n": 3}}},
    ),
    (
        {"self_edit": {"template": "Choose a config."}},
        "placeholder {demonstrations}",
        {"self_edit": {"template": "Examples:\n{demonstrations}\nChoose a config as JSON {...}"}},
    ),
    (
        {"self_edit": {"sampling": {"temperature": 0.0}}},
        r"temperature is 0 \(greedy\) but self_edit.n_train/n_eval ask for 15/5",
        {"self_edit": {"sampling": {"temperature": 0.0}, "n_train": 1, "n_eval": 1}},
    ),
    (
        {"inner_loop": {"batch_size": 8, "max_examples": 4}},
        r"batch_size: \(8\) is larger than inner_loop.max_examples \(4\)",
        {"inner_loop": {"batch_size": 4, "max_examples": 4}},
    ),
    (
        {"inner_loop": {"lr": 0.05}},
        "lr: 0.05 is above 0.01, the most a self-edit may choose",
        {"inner_loop": {"lr": 0.01}},
    ),
    (
        {"inner_loop": {"epochs": 11}},
        "epochs: 11 is above 10, the most a self-edit may choose",
        {"inner_loop": {"epochs": 10}},
    ),
    (
        {"oracle": {"augmentations": {"basic": True, "size": True, "chain": True}}},
        "repeat",
        {"oracle": {"augmentations": {"basic": True, "size": True, "chain": True, "repeat": False}}},
    ),
    (
        {"evaluation": {"vote_families": ["basic", "basic"]}},
        "listed twice: basic",
        {"evaluation": {"vote_families": []}},
    ),
    (
        {"evaluation": {"n_attempts": 4}},
        "n_attempts",
        {"evaluation": {"n_attempts": 3}},
    ),
    ({"conditions": []}, "at least one condition", {"conditions": ["oracle_ttt"]}),
    ({"conditions": ["seal", "seal"]}, "listed twice: seal", {"conditions": ["seal"]}),
    ({"conditions": ["base"]}, "conditions", {"conditions": ["icl"]}),
]


@pytest.mark.parametrize("bad, message, good", RULES, ids=[f"rule{i}" for i in range(len(RULES))])
def test_rule_raises_and_passes(bad, message, good):
    with pytest.raises(ValidationError, match=message):
        spec(**bad)
    spec(**good)
