"""The few-shot inner loop on a tiny random Llama: rounds per condition, self-edit -> training config,
invalid self-edits as recorded failures, voting through an injected predictor, and the memo."""

from __future__ import annotations

import pytest

from seal_repro.engine import LoraEngine
from seal_repro.fewshot.grids import grid_to_text
from seal_repro.fewshot.inner_loop import Job, Kit, compute_round, plan_rounds, round_key, run_rounds, train_config, \
    ttt_examples
from seal_repro.fewshot.self_edit import Augmentations, SelfEdit, TrainingChoice
from seal_repro.fewshot.vote import vote_prompts, vote_transforms
from seal_repro.memo import Memo
from seal_repro.memory import without_measurements

EDIT = SelfEdit(augmentations=Augmentations(basic=True, size=False, chain=False, repeat=False),
                training=TrainingChoice(loss_on="all_tokens", learning_rate=0.005, epochs=3))
PARTIAL = '{"augmentations": {"basic": false, "size": false, "chain": false, "repeat": true}}'


def truth_predictor(task, spec, calls):
    """Answers every voting prompt with the equally transformed true output (as a perfect model would)."""
    answers = {}
    for k, (_, expected) in enumerate(task.test):
        for t, p in vote_prompts(task, k, vote_transforms(spec)):
            answers[p] = grid_to_text(t.apply(expected) if hasattr(t, "fits") else expected)

    def predict(prompts):
        calls.append(len(prompts))
        return [answers[p] for p in prompts]

    return predict


def kit_of(engine, predict) -> Kit:
    """A kit from a plain predict function (a stage's comes from seal_repro.lmeval.arc)."""
    return Kit(engine, predict, code="test")


def test_plan_rounds_per_condition(tiny_spec, task):
    texts = {task.id: [EDIT.to_json(), "not json at all", PARTIAL]}
    icl = plan_rounds("icl", [task], texts, tiny_spec)
    assert [(r.self_edit, r.valid) for r in icl] == [(None, True)]
    oracle = plan_rounds("oracle_ttt", [task], texts, tiny_spec)
    assert len(oracle) == 1 and oracle[0].self_edit.families == tiny_spec.oracle.families
    rounds = plan_rounds("ttt_no_rl", [task], texts, tiny_spec)
    assert [r.valid for r in rounds] == [True, False, True]
    assert rounds[1].failure == "no JSON object in the output" and rounds[1].self_edit is None
    # a self-edit that leaves `training` out takes the spec's defaults
    il = tiny_spec.inner_loop
    assert rounds[2].self_edit.training == TrainingChoice(
        loss_on=il.loss_on, learning_rate=il.lr, epochs=il.epochs)
    assert plan_rounds("seal", [task], {}, tiny_spec) == []


def test_train_config_follows_the_self_edit(tiny_spec):
    cfg = train_config(EDIT, tiny_spec)
    assert (cfg.lr, cfg.epochs, cfg.mask_prompt) == (0.005, 3, False)
    assert (cfg.max_steps, cfg.lr_schedule, cfg.batch_size) == (2, "cosine", 2)
    out_only = EDIT.model_copy(update={"training": EDIT.training.model_copy(update={"loss_on": "output_tokens"})})
    assert train_config(out_only, tiny_spec).mask_prompt is True
    # every other training setting is the inner loop's (spec/training.py), clipping and warmup included
    il = tiny_spec.inner_loop.model_copy(update={"max_grad_norm": 1.0, "warmup_ratio": 0.1, "weight_decay": 0.01})
    cfg = train_config(EDIT, tiny_spec.model_copy(update={"inner_loop": il}))
    assert (cfg.max_grad_norm, cfg.warmup_ratio, cfg.weight_decay, cfg.lr) == (1.0, 0.1, 0.01, 0.005)


def test_too_long_examples_are_dropped(tiny_spec, tiny_loaded, task):
    _, tok = tiny_loaded
    kept, dropped = ttt_examples(task, EDIT, tiny_spec, seed=0, tokenizer=tok)
    assert kept and dropped == 0
    short = tiny_spec.model_copy(update={"inner_loop": tiny_spec.inner_loop.model_copy(update={"max_seq_len": 60})})
    kept2, dropped2 = ttt_examples(task, EDIT, short, seed=0, tokenizer=tok)
    assert dropped2 > 0 and len(kept2) + dropped2 == len(kept)
    assert all(len(tok(e.prompt + e.completion)["input_ids"]) + 1 <= 60 for e in kept2)


def test_rounds_train_predict_vote_and_memoize(tiny_spec, tiny_loaded, task, tmp_path):
    model, tok = tiny_loaded
    engine = LoraEngine(model, tok, tiny_spec.inner_loop.lora)
    calls: list[int] = []
    rounds = plan_rounds("ttt_no_rl", [task], {task.id: [EDIT.to_json(), "{broken"]}, tiny_spec)
    memo = Memo(tmp_path / "memo")
    recs = run_rounds(rounds, kit_of(engine, truth_predictor(task, tiny_spec, calls)), tiny_spec, "fp", memo)
    good, bad = recs
    assert good["solved"] is True and good["attempts"][0][0] == grid_to_text(task.test[0][1])
    assert 1 <= good["train"]["steps"] <= tiny_spec.inner_loop.max_steps and good["train"]["examples"] > 0
    assert len(good["responses"]) == 8  # identity + the 7 symmetries of `basic` voting
    assert bad["solved"] is False and bad["valid"] is False and bad["failure"].startswith("invalid JSON")
    assert calls == [8]  # one batched call, none for the invalid self-edit
    # the same self-edit in another condition is the same round: served from the memo, no new call
    again = run_rounds(plan_rounds("seal", [task], {task.id: [EDIT.to_json()]}, tiny_spec),
                       kit_of(engine, truth_predictor(task, tiny_spec, calls)), tiny_spec, "fp", memo)
    assert calls == [8] and memo.hits == 1 and again[0]["solved"] is True and again[0]["condition"] == "seal"


def test_garbage_predictions_do_not_solve(tiny_spec, tiny_loaded, task, tmp_path):
    model, tok = tiny_loaded
    engine = LoraEngine(model, tok, tiny_spec.inner_loop.lora)
    recs = run_rounds(plan_rounds("icl", [task], {}, tiny_spec), kit_of(engine, lambda ps: ["blue"] * len(ps)),
                      tiny_spec, "fp", Memo(enabled=False))
    assert recs[0]["solved"] is False and recs[0]["attempts"] == [[]] and recs[0]["train"] is None


@pytest.mark.parametrize("change", ["seed", "self_edit", "model", "code"])
def test_round_key_changes_with_what_decides_the_round(tiny_spec, task, change):
    rnd = plan_rounds("ttt_no_rl", [task], {task.id: [EDIT.to_json()]}, tiny_spec)[0]
    base = round_key(rnd, tiny_spec, "fp", "code")
    assert round_key(rnd, tiny_spec, "fp", "code") == base
    if change == "seed":
        assert round_key(rnd, tiny_spec.model_copy(update={"seed": 1}), "fp", "code") != base
    elif change == "self_edit":
        other = plan_rounds("ttt_no_rl", [task], {task.id: [PARTIAL]}, tiny_spec)[0]
        assert round_key(other, tiny_spec, "fp", "code") != base
    elif change == "model":
        assert round_key(rnd, tiny_spec, "other-model", "code") != base
    else:  # the code computing the round (seal_repro.codehash)
        assert round_key(rnd, tiny_spec, "fp", "other-code") != base


def test_an_adapter_that_trained_but_changed_nothing_fails_the_round(tiny_spec, tiny_loaded, task, monkeypatch):
    from seal_repro.engine import TrainStats
    from seal_repro.errors import AdapterNotApplied
    model, tok = tiny_loaded
    engine = LoraEngine(model, tok, tiny_spec.inner_loop.lora)
    rnd = plan_rounds("ttt_no_rl", [task], {task.id: [EDIT.to_json()]}, tiny_spec)[0]
    calls: list[int] = []
    kit = kit_of(engine, truth_predictor(task, tiny_spec, calls))
    assert compute_round(kit, Job(rnd, tiny_spec))["train"]["steps"] >= 1
    monkeypatch.setattr(engine, "train", lambda *a, **k: TrainStats(steps=2))  # "trained", adapter still B = 0
    with pytest.raises(AdapterNotApplied, match=rf"adapter for task {task.id} \(ttt_no_rl\) left the model's logits"):
        compute_round(kit, Job(rnd, tiny_spec))
    assert calls == [8]  # the broken round was never scored


def test_rounds_in_forked_copies_equal_the_in_process_ones(tiny_spec, tiny_loaded, task, tmp_path):
    from seal_repro.executor import LocalExecutor

    model, tok = tiny_loaded
    engine = LoraEngine(model, tok, tiny_spec.inner_loop.lora)
    other = SelfEdit(augmentations=EDIT.augmentations, training=TrainingChoice(loss_on="output_tokens",
                                                                                learning_rate=0.005, epochs=1))
    texts = [EDIT.to_json(), "{broken", other.to_json(), EDIT.to_json()]  # a duplicate too: computed once
    rounds = plan_rounds("ttt_no_rl", [task], {task.id: texts}, tiny_spec)
    kit = kit_of(engine, truth_predictor(task, tiny_spec, []))
    here = run_rounds(rounds, kit, tiny_spec, "fp", Memo(enabled=False))
    memo = Memo(tmp_path / "memo")
    there = run_rounds(rounds, kit, tiny_spec, "fp", memo, executor=LocalExecutor(workers=2, threads=1))

    assert without_measurements(there) == without_measurements(here)
    assert memo.hits == 1 and memo.misses == 2
