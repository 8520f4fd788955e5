"""The few-shot report's paired SEAL difference and its self-edit choice summary (which configurations RL moved
toward), on hand-made records."""

from __future__ import annotations

import json
import math

import pytest

from seal_repro.io import read_json, write_json, write_jsonl
from seal_repro.report.fewshot import (
    choice_features,
    choice_groups,
    choice_metrics,
    choice_shares,
    lr_bucket,
    paired_metrics,
    paired_vs,
    task_success,
    write_report,
)


def _edit(basic=True, repeat=False, loss="output_tokens", lr=1e-3, epochs=2):
    return {"augmentations": {"basic": basic, "size": False, "chain": False, "repeat": repeat},
            "training": {"loss_on": loss, "learning_rate": lr, "epochs": epochs}}


def _rec(task, solved, edit=None, valid=True, **extra):
    return {"task_id": task, "solved": solved, "valid": valid, "self_edit": edit, **extra}


def test_learning_rate_buckets_are_half_open():
    assert lr_bucket(5e-5) == "lr_lt_1e-04"
    assert lr_bucket(1e-4) == "lr_1e-04_3e-04"
    assert lr_bucket(1e-3) == "lr_1e-03_3e-03" and lr_bucket(2.9e-3) == "lr_1e-03_3e-03"
    assert lr_bucket(5e-3) == "lr_3e-03_1e-02"
    assert lr_bucket(1e-2) == "lr_ge_1e-02" and lr_bucket(0.5) == "lr_ge_1e-02"


def test_choice_features_name_every_option_chosen():
    assert choice_features(_edit(basic=True, repeat=True, loss="all_tokens", lr=1e-2, epochs=3)) == \
        ["aug_basic", "aug_repeat", "lr_ge_1e-02", "epochs_3"]
    assert choice_features({"augmentations": {"basic": False, "size": True, "chain": False, "repeat": False},
                            "training": {"loss_on": "output_tokens"}}) == ["aug_size", "loss_output_tokens"]


def test_seal_minus_a_condition_is_paired_over_tasks():
    seal = [_rec("a", True), _rec("a", True), _rec("b", True), _rec("b", False), _rec("c", False)]
    base = [_rec("a", False), _rec("a", True), _rec("b", False), _rec("b", False), _rec("c", False),
            _rec("d", True)]  # d: not scored by seal, left out of the pairing
    assert task_success(seal) == {"a": 1.0, "b": 0.5, "c": 0.0}
    tests = paired_vs(seal, {"ttt_no_rl": base}, resamples=500, seed=0)
    test, n = tests["ttt_no_rl"]
    assert n == 3 and math.isclose(test.diff, (0.5 + 0.5 + 0.0) / 3)
    assert test.low <= test.diff <= test.high and 0.0 <= test.p_value <= 1.0
    m = paired_metrics("seal", tests)
    assert m["seal.n_tasks_vs_ttt_no_rl"] == 3 and math.isclose(m["seal.diff_vs_ttt_no_rl"], round(test.diff, 6))
    assert {"seal.diff_vs_ttt_no_rl_low", "seal.diff_vs_ttt_no_rl_high", "seal.p_vs_ttt_no_rl"} <= set(m)


def test_choice_shares_compare_sampled_kept_and_evaluation_self_edits():
    rl = [_rec("t1", True, _edit(lr=1e-2), reward=1), _rec("t1", False, _edit(lr=1e-3), reward=0),
          _rec("t2", True, _edit(lr=1e-2, repeat=True), reward=1), _rec("t2", False, None, valid=False, reward=0)]
    conds = {"ttt_no_rl": [_rec("e", False, _edit(lr=1e-3)), _rec("e", True, _edit(lr=1e-2))],
             "seal": [_rec("e", True, _edit(lr=1e-2)), _rec("e", True, _edit(lr=1e-2))],
             "icl": [_rec("e", False)]}
    groups = choice_groups(rl, conds)
    assert list(groups) == ["rl_sampled", "rl_kept", "ttt_no_rl", "seal"]
    shares, counts = choice_shares(groups)
    assert counts == {"rl_sampled": 3, "rl_kept": 2, "ttt_no_rl": 2, "seal": 2}  # the invalid one is left out
    assert math.isclose(shares["rl_sampled"]["lr_ge_1e-02"], 2 / 3) and shares["rl_kept"]["lr_ge_1e-02"] == 1.0
    assert shares["ttt_no_rl"]["lr_ge_1e-02"] == 0.5 and shares["seal"]["lr_ge_1e-02"] == 1.0
    m = choice_metrics(shares, counts)
    assert m["choice.rl_kept.n"] == 2 and m["choice.rl_kept.aug_repeat"] == 0.5
    assert "choice.seal.lr_1e-03_3e-03" not in m  # an option nobody in the group chose has no key
    json.dumps(m, allow_nan=False)


@pytest.fixture
def folders(tmp_path):
    """baselines/ and rl/ as the stages write them: 2 evaluation tasks, 2 self-edits each."""
    base, rl = tmp_path / "baselines", tmp_path / "rl"
    edits = {"lo": _edit(lr=1e-3), "hi": _edit(lr=1e-2, repeat=True)}
    rows = {
        "icl": [_rec("a", False), _rec("b", False)],
        "oracle_ttt": [_rec("a", True, edits["hi"]), _rec("b", True, edits["hi"])],
        "ttt_no_rl": [_rec("a", False, edits["lo"]), _rec("a", True, edits["hi"]), _rec("b", False, edits["lo"]),
                      _rec("b", False, edits["lo"])],
    }
    for cond, recs in rows.items():
        write_jsonl(base / cond / "records.jsonl", recs)
        write_json(base / cond / "summary.json", {"condition": cond})
    seal = [_rec("a", True, edits["hi"]), _rec("a", True, edits["hi"]), _rec("b", True, edits["hi"]),
            _rec("b", False, edits["lo"])]
    write_jsonl(rl / "seal" / "records.jsonl", seal)
    write_json(rl / "seal" / "summary.json", {"condition": "seal"})
    write_jsonl(rl / "records.jsonl", [_rec("t", True, edits["hi"], reward=1), _rec("t", False, edits["lo"], reward=0)])
    write_json(rl / "summary.json", {"skipped": False, "policy_trained": True, "train_success_rate": 0.5,
                                     "iterations": [{"iteration": 0, "sampled": 2, "valid": 2, "rewarded": 1}]})
    return base, rl


def test_report_has_the_paired_difference_and_the_choice_table(folders, tmp_path, tiny_spec):
    base, rl = folders
    table = write_report(tiny_spec, base, rl, tmp_path / "results")
    metrics = read_json(tmp_path / "results" / "metrics.json")
    # seal per task: a 1.0, b 0.5; ttt_no_rl: a 0.5, b 0.0 -> +0.5 on both tasks
    assert math.isclose(metrics["seal.diff_vs_ttt_no_rl"], 0.5) and metrics["seal.n_tasks_vs_ttt_no_rl"] == 2
    assert metrics["seal.diff_vs_icl"] == 0.75 and metrics["seal.diff_vs_oracle_ttt"] == -0.25
    assert metrics["choice.rl_sampled.lr_ge_1e-02"] == 0.5 and metrics["choice.rl_kept.lr_ge_1e-02"] == 1.0
    assert metrics["choice.seal.lr_ge_1e-02"] == 0.75 and metrics["choice.ttt_no_rl.lr_ge_1e-02"] == 0.25
    assert "## SEAL vs each condition" in table and "| TTT + self-edit (no RL) | 2 | +50.0 |" in table
    assert "## Self-edit choices: which configurations RL moved toward" in table
    line = next(l for l in table.splitlines() if l.startswith("| learning rate ≥ 1e-02 |"))
    assert line.split(" | ")[1:] == ["50.0", "100.0", "25.0", "75.0", "+50.0", "100.0 (1/1)", "+50.0 |"]
    json.dumps(metrics, allow_nan=False)
