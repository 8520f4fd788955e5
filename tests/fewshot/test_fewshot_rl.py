"""ReST-EM for few-shot ARC on the tiny Llama (seal_repro/fewshot/rl.py): what is kept, what the policy is
fine-tuned on and with which training settings (rl.sft), and that the saved policy is a plain PEFT adapter.

The reward is computed for real (TTT rounds through the inner loop) with a predictor that always answers the
truth, so a round solves its task exactly when its self-edit is valid; the policy's samples are injected (a random
tiny model writes no JSON)."""

from __future__ import annotations

import math

import pytest
import torch

from seal_repro import rest_em
from seal_repro.engine import LoraEngine, TrainExample
from seal_repro.fewshot import rl as fewshot_rl
from seal_repro.fewshot.rl import run_rl, sft_examples
from seal_repro.fewshot.self_edit import Augmentations, SelfEdit, TrainingChoice
from seal_repro.fewshot.self_edits import EVAL_SEED_OFFSET, policy_prompt, rl_seed, sample_self_edits
from seal_repro.io import read_json, read_jsonl
from seal_repro.memo import Memo, fingerprint_model_dir

from .conftest import TruthPredictorFactory, write_tasks_dir

GOOD = SelfEdit(augmentations=Augmentations(basic=True, size=False, chain=False, repeat=True)).to_json()
# what the injected policy writes for sample 0; a learning rate the tiny model's adapter visibly moves with
SOLVING = SelfEdit(augmentations=Augmentations(basic=True, size=False, chain=False, repeat=False),
                   training=TrainingChoice(loss_on="all_tokens", learning_rate=0.005, epochs=1)).to_json()


def _logits(model, tok, text="Input:\n01\nOutput:\n"):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def test_sampling_is_seeded_ordered_and_memoized(tiny_spec, tiny_loaded, task, tmp_path):
    model, tok = tiny_loaded
    rows = sample_self_edits(model, tok, [task], 2, tiny_spec, seed=5)
    assert [(r["task_id"], r["index"]) for r in rows] == [(task.id, 0), (task.id, 1)]
    limit = tiny_spec.self_edit.sampling.max_new_tokens
    assert all(0 <= r["tokens"] <= limit and r["truncated"] == (r["tokens"] == limit) for r in rows)
    assert rows == sample_self_edits(model, tok, [task], 2, tiny_spec, seed=5)
    assert rows != sample_self_edits(model, tok, [task], 2, tiny_spec, seed=6)
    memo = Memo(tmp_path / "memo")
    assert sample_self_edits(model, tok, [task], 2, tiny_spec, seed=5, memo=memo, model_fingerprint="fp") == rows
    assert (memo.hits, memo.misses) == (0, 2)  # one batch per sample index
    assert sample_self_edits(model, tok, [task], 2, tiny_spec, seed=5, memo=memo, model_fingerprint="fp") == rows
    assert (memo.hits, memo.misses) == (2, 2)
    sample_self_edits(model, tok, [task], 2, tiny_spec, seed=5, memo=memo, model_fingerprint="other")
    assert (memo.hits, memo.misses) == (2, 4)  # another model (a trained policy) samples anew


def test_sft_examples_keep_the_json_only(tiny_spec, tiny_loaded, task):
    _, tok = tiny_loaded
    ex, dropped = sft_examples([(task, f"Sure! Here it is:\n{GOOD}\nGood luck."), (task, "no json")], tiny_spec, tok)
    assert len(ex) == 1 and ex[0].completion == GOOD and dropped == 0
    assert ex[0].prompt == policy_prompt(task, tiny_spec, tok) and "Input:" in ex[0].prompt
    # the SFT's own max_seq_len (rl.sft), not the inner loop's, bounds the pairs
    short = tiny_spec.model_copy(update={"rl": tiny_spec.rl.model_copy(update={
        "sft": tiny_spec.rl.sft.model_copy(update={"max_seq_len": 100})})})
    assert sft_examples([(task, GOOD)], short, tok) == ([], 1)  # truncating would cut the self-edit off
    short_ttt = tiny_spec.model_copy(update={"inner_loop": tiny_spec.inner_loop.model_copy(update={"max_seq_len": 100})})
    assert len(sft_examples([(task, GOOD)], short_ttt, tok)[0]) == 1


def _with_sft(spec, **sft):
    return spec.model_copy(update={"rl": spec.rl.model_copy(update={"sft": spec.rl.sft.model_copy(update=sft)})})


@pytest.fixture
def injected_policy(monkeypatch):
    """Replace the policy's sampling in the RL module: sample 0 of a task is `texts[0]`, and so on (cycling);
    returns the calls' (seed, model fingerprint)."""
    calls = []
    texts = ["no json"]

    def sample(model, tok, tasks, n, spec, seed, memo=None, model_fingerprint=None):
        calls.append((seed, model_fingerprint))
        return [{"task_id": t.id, "index": i, "text": texts[i % len(texts)], "tokens": 5, "truncated": False}
                for t in sorted(tasks, key=lambda t: t.id) for i in range(n)]

    monkeypatch.setattr(fewshot_rl, "sample_self_edits", sample)
    return calls, texts


def _config_spy(monkeypatch):
    """Every (settings, mask_prompt, TrainConfig) the policy's SFT builds its training from."""
    seen = []
    real = rest_em.train_config

    def spy(settings, *, mask_prompt=False, **overrides):
        cfg = real(settings, mask_prompt=mask_prompt, **overrides)
        seen.append((settings, mask_prompt, cfg))
        return cfg

    monkeypatch.setattr(rest_em, "train_config", spy)
    return seen


def test_rest_em_keeps_solving_self_edits_and_trains_the_policy(tiny_spec, task, tmp_path, injected_policy,
                                                                monkeypatch):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    calls, texts = injected_policy
    texts[:] = [SOLVING, "no json"]
    configs = _config_spy(monkeypatch)
    # 1 kept self-edit x 4 epochs, batch 1 = 4 passes; 2 accumulated per step: 2 optimizer steps
    spec = _with_sft(tiny_spec, epochs=4, batch_size=1, grad_accum=2, lr_schedule="cosine")
    model_dir = tiny_spec.model.path
    tasks = write_tasks_dir(tmp_path / "tasks", [task], [task], spec)
    out = tmp_path / "rl"
    summary = run_rl(spec, model_dir, tasks, out, TruthPredictorFactory(), Memo(tmp_path / "memo"))

    records = read_jsonl(out / "records.jsonl")
    assert [(r["condition"], r["iteration"], r["self_edit_index"], r["valid"]) for r in records] == [
        ("rl", 0, 0, True), ("rl", 0, 1, False)]
    assert [r["reward"] for r in records] == [1, 0] and records[0]["train"]["steps"] >= 1
    (it,) = summary["iterations"]
    assert (it["sampled"], it["valid"], it["rewarded"], it["sft_dropped_too_long"]) == (2, 1, 1, 0)
    assert it["sft"]["examples"] == 1 and it["sft"]["steps"] == 2  # rl.sft.grad_accum reached the SFT
    assert it["metrics"]["kept"] == 1 and it["metrics"]["mean_reward"] == 0.5
    assert summary["policy_trained"] and summary["train_success_rate"] == 0.5
    assert summary["eval_self_edits"] == "sampled from the policy" and summary["lm_eval_task_version"] == "truth"
    # the SFT trained with rl.sft's settings, the loss on the self-edit only
    ((settings, mask_prompt, cfg),) = configs
    assert settings == spec.rl.sft and mask_prompt is True
    assert (cfg.grad_accum, cfg.lr_schedule, cfg.lr, cfg.epochs) == (2, "cosine", spec.rl.sft.lr, 4)

    # iteration 0 sampled from the base model; the evaluation self-edits from the trained policy
    base_fp = fingerprint_model_dir(model_dir)
    assert calls[0] == (rl_seed(spec, 0), base_fp)
    assert calls[1][0] == spec.seed + EVAL_SEED_OFFSET and calls[1][1] != base_fp
    assert [r["text"] for r in read_jsonl(out / "self_edits.jsonl")] == [SOLVING, "no json"]
    seal = read_json(out / "seal" / "summary.json")
    assert summary["seal"] == seal and (seal["condition"], seal["rounds"], seal["solved"]) == ("seal", 2, 1)
    assert [r["solved"] for r in read_jsonl(out / "seal" / "records.jsonl")] == [True, False]
    assert read_json(out / "summary.json") == summary

    # the saved policy is a plain PEFT adapter over the base model, and it moved off the base model
    plain = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = __import__("transformers").AutoTokenizer.from_pretrained(model_dir)
    base = _logits(plain, tok)
    loaded = PeftModel.from_pretrained(plain, out / "policy")
    assert not torch.allclose(_logits(loaded, tok), base)


def test_nothing_rewarded_leaves_the_policy_as_the_base_model(tiny_spec, task, tmp_path, injected_policy):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    calls, _ = injected_policy  # every sample: "no json"
    model_dir = tiny_spec.model.path
    tasks = write_tasks_dir(tmp_path / "tasks", [task], [task], tiny_spec)
    summary = run_rl(tiny_spec, model_dir, tasks, tmp_path / "rl", TruthPredictorFactory(), Memo(enabled=False))
    (it,) = summary["iterations"]
    assert not summary["policy_trained"] and it["sft"] is None and it["rewarded"] == 0 and it["valid"] == 0
    assert summary["eval_self_edits"].startswith("the base model's")
    base_fp = fingerprint_model_dir(model_dir)
    assert [fp for _, fp in calls] == [base_fp, base_fp]  # the untrained policy samples as the base model
    plain = AutoModelForCausalLM.from_pretrained(model_dir)
    tok = AutoTokenizer.from_pretrained(model_dir)
    base = _logits(plain, tok)
    loaded = PeftModel.from_pretrained(plain, tmp_path / "rl" / "policy")
    assert torch.equal(_logits(loaded, tok), base)


def _sft_run(policy, examples, sft, seed=0):
    """(sft_policy's statistics, the lr of every optimizer step)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    lrs = []
    handle = register_optimizer_step_pre_hook(lambda opt, args, kwargs: lrs.append(opt.param_groups[0]["lr"]))
    try:
        stats = rest_em.sft_policy(policy, examples, sft, seed=seed)
    finally:
        handle.remove()
    assert len(lrs) == stats["steps"]
    return stats, lrs


def test_policy_sft_honours_grad_accum_and_lr_schedule(tiny_spec, tiny_loaded, task):
    model, tok = tiny_loaded
    policy = LoraEngine(model, tok, tiny_spec.rl.sft.lora)
    examples, _ = sft_examples([(task, GOOD)] * 4, tiny_spec, tok)
    assert len(examples) == 4 and all(isinstance(e, TrainExample) for e in examples)
    sft = tiny_spec.rl.sft.model_copy(update={"batch_size": 1, "epochs": 2, "lr": 1e-2, "lr_schedule": "linear"})

    one, lrs_one = _sft_run(policy, examples, sft.model_copy(update={"grad_accum": 1}))
    two, lrs_two = _sft_run(policy, examples, sft.model_copy(update={"grad_accum": 2}))
    assert (one["steps"], two["steps"]) == (8, 4)  # 8 passes: every one a step, or every second one
    assert one["examples"] == two["examples"] == 4

    _, linear = _sft_run(policy, examples, sft.model_copy(update={"grad_accum": 1, "lr_schedule": "linear"}))
    _, cosine = _sft_run(policy, examples, sft.model_copy(update={"grad_accum": 1, "lr_schedule": "cosine"}))
    _, constant = _sft_run(policy, examples, sft.model_copy(update={"grad_accum": 1, "lr_schedule": "constant"}))
    assert linear == lrs_one and len(linear) == len(cosine) == 8
    assert linear[0] == cosine[0] == constant[0] == pytest.approx(1e-2)  # no warmup: the peak from the start
    assert linear[-1] == pytest.approx(1e-2 * 1 / 8)
    assert cosine[-1] == pytest.approx(1e-2 * 0.5 * (1 + math.cos(math.pi * 7 / 8)))
    assert cosine[-1] != pytest.approx(linear[-1]) and constant == pytest.approx([1e-2] * 8)


def test_ttt_on_policy_runs_the_seal_condition_on_the_merged_policy(tiny_spec, task, tmp_path, injected_policy,
                                                                  monkeypatch):
    """rl.ttt_on_policy: the SEAL rounds train and predict on the base model with the trained policy merged in (the
    reference's RL model is its TTT and inference base); untrained, the policy is the base model, which is kept."""
    calls, texts = injected_policy
    texts[:] = [SOLVING]
    merged = []
    real = fewshot_rl.load_policy

    def spy(spec, model_dir, policy_dir):
        merged.append(policy_dir)
        return real(spec, model_dir, policy_dir)

    monkeypatch.setattr(fewshot_rl, "load_policy", spy)
    spec = tiny_spec.model_copy(update={"rl": tiny_spec.rl.model_copy(update={"ttt_on_policy": True})})
    tasks = write_tasks_dir(tmp_path / "tasks", [task], [task], spec)
    summary = run_rl(spec, tiny_spec.model.path, tasks, tmp_path / "rl", TruthPredictorFactory(), Memo(enabled=False))
    assert summary["policy_trained"] and merged == [tmp_path / "rl" / "policy"]
    assert summary["seal_ttt_base"] == "the base model with the policy merged in"
    assert summary["seal"]["solved"] == 2  # a perfect predictor solves on either base
    texts[:] = ["no json"]  # nothing rewarded: no merge, the base model's kit
    merged.clear()
    summary = run_rl(spec, tiny_spec.model.path, tasks, tmp_path / "rl2", TruthPredictorFactory(), Memo(enabled=False))
    assert not summary["policy_trained"] and merged == [] and summary["seal_ttt_base"] == "the base model"
