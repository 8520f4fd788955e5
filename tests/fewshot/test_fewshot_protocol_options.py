"""The reference protocol's spec options in the inner loop, sampling and prediction: the step-limit gate, fractional
epochs, warmup, the reference's TTT data on a model, re-sampling invalid self-edits, and the reference's prompt
format through lm-eval."""

from __future__ import annotations

import json

import pytest

from seal_repro.fewshot import self_edits as fewshot_self_edits
from seal_repro.fewshot.formats import REFERENCE, Prompt, render
from seal_repro.fewshot.inner_loop import (
    Job,
    Kit,
    compute_round,
    planned_epochs,
    resolve_self_edit,
    train_config,
    trains,
    ttt_examples,
)
from seal_repro.fewshot.self_edit import Augmentations, SelfEdit, TrainingChoice
from seal_repro.fewshot.self_edits import sample_self_edits
from seal_repro.fewshot.vote import query_rows

REF_EDIT = ('{"data_generation": {"use_basic_augmentations": true, "use_size_augmentations": false, '
            '"use_chain_augmentations": false, "use_repeat_augmentations": false}, '
            '"training": {"strategy": "train_using_output_tokens", "learning_rate": 0.01, "num_train_epochs": %s}}')
CHAT = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}"


def _update(spec, **sections):
    """The spec with some keys of some sections changed, validated again (so cross-field rules apply)."""
    data = spec.model_dump()
    for section, values in sections.items():
        data[section].update(values)
    return type(spec).model_validate(data)


def _edit(epochs, lr=0.01):
    return SelfEdit.model_construct(
        augmentations=Augmentations(basic=False, size=False, chain=False, repeat=False),
        training=TrainingChoice.model_construct(loss_on="output_tokens", learning_rate=lr, epochs=epochs))


# ------------------------------------------------------------------------------------------------ step limit, epochs

def test_step_limit_skip_is_the_references_gate(tiny_spec):
    """few-shot/self-edit.py:553: epochs x examples // batch > max_steps -> 0 epochs; truncate trains and stops."""
    skip = _update(tiny_spec, inner_loop={"step_limit_rule": "skip", "max_steps": 375, "batch_size": 2})
    # 250 examples, batch 2: 3 epochs = 375 steps pass, 4 epochs = 500 do not (the notes' table: n=250 -> 3)
    assert planned_epochs(_edit(3), 250, skip) == 3 and planned_epochs(_edit(4), 250, skip) == 0
    assert planned_epochs(_edit(32), 23, skip) == 32 and planned_epochs(_edit(33), 23, skip) == 0
    assert not trains(_edit(4), 250, skip) and trains(_edit(3), 250, skip)
    cfg = train_config(_edit(32), skip, 23)
    assert cfg.max_steps is None and cfg.epochs == 32  # passed the gate: every step, even past 375 (32 x 12 = 384)
    truncate = _update(tiny_spec, inner_loop={"max_steps": 375})
    assert planned_epochs(_edit(4), 250, truncate) == 4 and train_config(_edit(4), truncate, 250).max_steps == 375


def test_fractional_epochs_train_as_the_hf_trainer(tiny_spec):
    spec = _update(tiny_spec, inner_loop={"step_limit_rule": "skip", "max_steps": 375, "batch_size": 2})
    cfg = train_config(_edit(1.5), spec, 10)  # 5 steps per epoch: ceil(1.5 x 5) = 8 steps over 2 passes
    assert (cfg.epochs, cfg.max_steps) == (2, 8)


def test_zero_epochs_or_zero_lr_leave_the_adapter_untrained(tiny_spec, tiny_loaded, task):
    from seal_repro.engine import LoraEngine

    model, tok = tiny_loaded
    spec = _update(tiny_spec, self_edit={"json_format": "reference", "template": "{demonstrations}"},
                   inner_loop={"augmentations": "reference", "max_examples": 4})
    engine = LoraEngine(model, tok, spec.inner_loop.lora)
    kit = Kit(engine, lambda prompts: ["x"] * len(prompts), code="test")
    for text in (REF_EDIT % 0, (REF_EDIT % 2).replace("0.01", "0")):
        edit, failure = resolve_self_edit(text, spec)
        assert failure is None
        from seal_repro.fewshot.inner_loop import Round

        out = compute_round(kit, Job(Round("ttt_no_rl", task, 0, text, edit), spec))
        assert out["train"]["steps"] == 0 and out["train"]["examples"] > 0 and not out["solved"]


def test_a_warmup_step_at_learning_rate_0_is_not_a_broken_adapter(tiny_spec, tiny_loaded, task):
    """With warmup (the reference's 11 steps), a run of one step trains at learning rate 0 and leaves the logits as
    they were: not an AdapterNotApplied."""
    from seal_repro.engine import LoraEngine
    from seal_repro.fewshot.inner_loop import Round

    model, tok = tiny_loaded
    spec = _update(tiny_spec, inner_loop={"warmup_steps": 11, "max_steps": 1})
    engine = LoraEngine(model, tok, spec.inner_loop.lora)
    kit = Kit(engine, lambda prompts: ["x"] * len(prompts), code="test")
    edit = SelfEdit(augmentations=Augmentations(basic=False, size=False, chain=False, repeat=False),
                    training=TrainingChoice(loss_on="all_tokens", learning_rate=0.01, epochs=1))
    out = compute_round(kit, Job(Round("ttt_no_rl", task, 0, edit.to_json(), edit), spec))
    assert out["train"]["steps"] == 1


# ------------------------------------------------------------------------------------------------ reference TTT data

def test_reference_ttt_examples_use_the_reference_messages_and_cap_after_the_filter(tiny_spec, tiny_loaded, task):
    _, tok = tiny_loaded
    tok.chat_template = CHAT
    spec = _update(tiny_spec, inner_loop={"augmentations": "reference", "max_examples": 5},
                   evaluation={"prompt_format": "reference"}, model={"chat_template": True})
    edit, _ = resolve_self_edit(REF_EDIT % 2, _update(spec, self_edit={"json_format": "reference",
                                                                       "template": "{demonstrations}"}))
    examples, dropped = ttt_examples(task, edit, spec, 0, tok)
    assert len(examples) == 5 and dropped == 0
    assert all(e.prompt.startswith("<system>Figure out") and e.completion.endswith("]#") for e in examples)
    few, dropped = ttt_examples(task, edit, _update(spec, inner_loop={"max_seq_len": 330}), 0, tok)
    assert dropped > 0 and len(few) <= 5  # the length filter runs first, then the cap


# ------------------------------------------------------------------------------------------------ re-sampling

def test_resample_until_valid_bounded_by_max_tries(tiny_spec, tiny_loaded, task, monkeypatch):
    """self_edit.resample: invalid samples are drawn again (the reference: until they parse), at most max_tries."""
    from seal_repro.engine import Generation

    model, tok = tiny_loaded
    script = {0: ["nope", "nope", "nope"], 1: ["nope", json.dumps({"augmentations": {
        "basic": True, "size": False, "chain": False, "repeat": False}})]}
    seen = []

    def fake(model, tok, prompts, *, seed, constraint=None, **kw):
        seen.append((len(prompts), seed))
        i = (seed - 7) // 1000 % 1000  # the sample index
        t = (seed - 7 - 1000 * i) // fewshot_self_edits.RETRY_STRIDE
        text = script[i][min(t, len(script[i]) - 1)]
        return [Generation(text, 3, False) for _ in prompts]

    monkeypatch.setattr(fewshot_self_edits, "generate_details", fake)
    spec = _update(tiny_spec, self_edit={"resample": {"max_tries": 3}})
    rows = sample_self_edits(model, tok, [task], 2, spec, seed=7)
    assert [(r["index"], r["tries"], r["text"][:4]) for r in rows] == [(0, 3, "nope"), (1, 2, '{"au')]
    assert [s for _, s in seen] == [7, 7 + fewshot_self_edits.RETRY_STRIDE, 7 + 2 * fewshot_self_edits.RETRY_STRIDE,
                                    1007, 1007 + fewshot_self_edits.RETRY_STRIDE]
    seen.clear()
    rows = sample_self_edits(model, tok, [task], 2, tiny_spec, seed=7)  # no resample: one try each
    assert [r["tries"] for r in rows] == [1, 1] and len(seen) == 2


def test_policy_prompt_has_the_system_message_and_the_reference_demonstrations(tiny_spec, tiny_loaded, task):
    from seal_repro.fewshot.self_edits import policy_prompt

    _, tok = tiny_loaded
    tok.chat_template = CHAT
    spec = _update(tiny_spec, model={"chat_template": True}, evaluation={"prompt_format": "reference"},
                   self_edit={"system": "Be quick.", "template": "{demonstrations}------\n\nJSON?"})
    text = policy_prompt(task, spec, tok)
    assert text.startswith("<system>Be quick.\n<user>Input:\n1 2\n0 3\n\nOutput:\n2 1\n3 0\n\n")
    assert text.endswith("------\n\nJSON?\n<assistant>")


# ------------------------------------------------------------------------------------------------ lm-eval

def test_lm_eval_renders_reference_rows_as_the_inner_loop_does(tiny_spec, tiny_loaded, task, tmp_path):
    """The lm-eval task puts a row's `system` in the system message: the prompt it sends equals formats.render."""
    from lm_eval.tasks import get_task_dict

    from seal_repro.io import write_jsonl
    from seal_repro.lmeval import task_manager
    from seal_repro.lmeval.arc import ARC_TASK, ArcPredictor

    model, tok = tiny_loaded
    tok.chat_template = CHAT
    spec = _update(tiny_spec, model={"chat_template": True},
                   evaluation={"prompt_format": "reference", "voting": "reference"})
    rows = query_rows([task], "eval", spec)
    assert rows[0]["system"].startswith("Figure out") and rows[0]["format"] == "reference"
    write_jsonl(tmp_path / "prompts.jsonl", rows)
    lm_task = get_task_dict([ARC_TASK], task_manager(ARC_TASK, {"data_file": str(tmp_path / "prompts.jsonl")}))[ARC_TASK]
    predictor = ArcPredictor(model, tok, prompts_file=tmp_path / "prompts.jsonl", max_new_tokens=4, batch_size=4,
                             chat_template=True, until=[])
    doc = list(lm_task.test_docs())[0]
    rendered = lm_task.fewshot_context(doc, 0, apply_chat_template=True,
                                       chat_template=predictor.lm.apply_chat_template)
    assert rendered == render(tok, Prompt(doc["prompt"], doc["system"]), True)
    out = predictor([Prompt(r["prompt"], r["system"]).key for r in rows[:2]])
    assert len(out) == 2
    # the task's metric decodes the reference's text
    import importlib.util

    from seal_repro.lmeval import TASKS_DIR

    mod_spec = importlib.util.spec_from_file_location("seal_arc_utils", TASKS_DIR / "seal_arc" / "utils.py")
    utils = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(utils)
    assert utils.process_results(rows[0], [rows[0]["target"]]) == {"grid_match": 1.0, "parsed": 1.0}
    plain = next(r for r in rows if r["transform"].endswith(":identity"))
    assert REFERENCE.decode(plain["target"]) == task.test[0][1]


def test_our_defaults_write_the_prompts_file_as_before(tiny_spec, task):
    """The embedded default keeps its behaviour: under prompt_format/voting `ours`, the lm-eval rows are exactly the
    ones the old path wrote (no `system`/`format` keys), so its prompts file and answers do not change."""
    from seal_repro.fewshot.vote import prompt_rows, vote_transforms

    assert query_rows([task], "eval", tiny_spec) == prompt_rows([task], "eval", vote_transforms(tiny_spec))
