"""ReST-EM on the tiny Llama with an injected reward: what is kept, what the policy is fine-tuned on, and
that the saved policy is a plain PEFT adapter."""

from __future__ import annotations

import torch

from seal_repro.engine import LoraEngine
from seal_repro.fewshot.rl import policy_prompt, rest_em, sample_self_edits, sft_config, sft_examples
from seal_repro.fewshot.self_edit import Augmentations, SelfEdit

GOOD = SelfEdit(augmentations=Augmentations(basic=True, size=False, chain=False, repeat=True)).to_json()


def _logits(model, tok, text="Input:\n01\nOutput:\n"):
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


def test_sampling_is_seeded_and_ordered(tiny_spec, tiny_loaded, task):
    model, tok = tiny_loaded
    rows = sample_self_edits(model, tok, [task], 2, tiny_spec, seed=5)
    assert [(r["task_id"], r["index"]) for r in rows] == [(task.id, 0), (task.id, 1)]
    assert rows == sample_self_edits(model, tok, [task], 2, tiny_spec, seed=5)
    assert rows != sample_self_edits(model, tok, [task], 2, tiny_spec, seed=6)


def test_sft_examples_keep_the_json_only(tiny_spec, tiny_loaded, task):
    _, tok = tiny_loaded
    ex, dropped = sft_examples([(task, f"Sure! Here it is:\n{GOOD}\nGood luck."), (task, "no json")], tiny_spec, tok)
    assert len(ex) == 1 and ex[0].completion == GOOD and dropped == 0
    assert ex[0].prompt == policy_prompt(task, tiny_spec, tok) and "Input:" in ex[0].prompt
    assert sft_config(tiny_spec).mask_prompt is True  # loss on the self-edit, never on its prompt
    short = tiny_spec.model_copy(update={"inner_loop": tiny_spec.inner_loop.model_copy(update={"max_seq_len": 100})})
    assert sft_examples([(task, GOOD)], short, tok) == ([], 1)  # truncating would cut the self-edit off


def test_rest_em_keeps_solving_self_edits_and_trains_the_policy(tiny_spec, tiny_loaded, task, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model, tok = tiny_loaded
    base = _logits(model, tok)
    policy = LoraEngine(model, tok, tiny_spec.rl.sft.lora)
    seen = []

    def evaluate(rounds):  # reward: the first sample of each task "solves" it
        seen.extend(rounds)
        return [{"task_id": r.task.id, "self_edit_text": GOOD if r.self_edit_index == 0 else r.text,
                 "valid": r.valid, "solved": r.self_edit_index == 0} for r in rounds]

    result = rest_em(tiny_spec, [task], policy, evaluate)
    assert len(seen) == tiny_spec.self_edit.n_train and {r.condition for r in seen} == {"rl"}
    assert [r["reward"] for r in result.records] == [1, 0] and result.trained
    (it,) = result.iterations
    assert it["rewarded"] == 1 and it["sft"]["examples"] == 1 and it["sft"]["steps"] >= 1
    assert not torch.allclose(_logits(policy.peft_model, tok), base)  # the policy moved off the base model

    policy.save_adapter(tmp_path / "policy")
    plain = AutoModelForCausalLM.from_pretrained(tiny_spec.model.path)
    loaded = PeftModel.from_pretrained(plain, tmp_path / "policy")
    assert torch.allclose(_logits(loaded, tok), _logits(policy.peft_model, tok), atol=1e-5)


def test_nothing_rewarded_leaves_the_policy_as_the_base_model(tiny_spec, tiny_loaded, task):
    model, tok = tiny_loaded
    base = _logits(model, tok)
    policy = LoraEngine(model, tok, tiny_spec.rl.sft.lora)
    result = rest_em(tiny_spec, [task], policy, lambda rounds: [
        {"task_id": r.task.id, "self_edit_text": r.text, "valid": r.valid, "solved": False} for r in rounds])
    assert not result.trained and result.iterations[0]["sft"] is None
    assert torch.equal(_logits(policy.peft_model, tok), base)
