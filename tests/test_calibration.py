"""Grader calibration: agreement statistics, threshold fitting, the held-out split, the judge-equivalent correction."""

import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seal_repro.calibration import (
    Agreement,
    agreement_stats,
    calibrate,
    fit_threshold,
    half_of,
    judge_equivalent,
    load_calibration,
    with_judge_equivalents,
)
from seal_repro.cli import main
from seal_repro.errors import DataError
from seal_repro.replay import load_graded, reference_graded_files, replay_run
from seal_repro.spec.evaluation import ContainsGrader
from seal_repro.stats import AccuracyCI

TINY = Path(__file__).parent / "assets" / "graded" / "tiny.json"
REAL = reference_graded_files()


def _entry(tp, fp, fn, tn):
    return {"heldout": {"tp": tp, "fp": fp, "fn": fn, "tn": tn}}


def test_confusion_matrix_kappa_precision_recall_on_known_inputs():
    a = agreement_stats([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0])
    assert (a.tp, a.fp, a.fn, a.tn, a.n) == (2, 1, 1, 2, 6)
    assert a.agreement == pytest.approx(4 / 6) and a.kappa == pytest.approx(1 / 3)  # chance agreement 0.5
    assert (a.precision, a.recall, a.fpr) == (pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(1 / 3))


def test_kappa_textbook_example_and_edge_cases():
    # 50 items: yes/yes 20, grader yes judge no 5, grader no judge yes 10, no/no 15 -> po 0.7, pe 0.5
    assert Agreement(tp=20, fp=5, fn=10, tn=15).kappa == pytest.approx(0.4)
    assert agreement_stats([1, 0, 1], [1, 0, 1]).kappa == 1.0
    constant = agreement_stats([1, 1], [1, 1])
    assert math.isnan(constant.kappa) and math.isnan(constant.fpr)
    assert constant.to_dict()["kappa"] is None and constant.to_dict()["tp"] == 2
    with pytest.raises(ValueError):
        agreement_stats([1], [1, 0])


def test_fit_threshold_cuts_between_observed_scores():
    assert fit_threshold([0.1, 0.4, 0.6, 0.9], [0, 0, 1, 1]) == pytest.approx(0.5)
    assert fit_threshold([0.1, 0.4, 0.6, 0.9], [0, 1, 1, 1]) == pytest.approx(0.25)
    assert fit_threshold([0.2, 0.8], [1, 0]) == pytest.approx(0.5)  # every cut ties: the lowest
    assert fit_threshold([0.3, 0.3], [1, 0]) == 0.5


def test_half_of_is_a_stable_hash_of_the_title():
    assert half_of("Alpha") == 1 and half_of("Beta") == 0 and half_of("Beta") == half_of("Beta")


def test_judge_equivalent_leaves_a_perfect_grader_unchanged():
    for raw in (0.0, 0.31, 1.0):
        assert judge_equivalent(raw, _entry(40, 0, 0, 60), 500, 0) == (raw, raw, raw)


def test_judge_equivalent_inverts_known_error_rates_and_clips():
    entry = _entry(tp=800, fp=100, fn=200, tn=900)  # TPR 0.8, FPR 0.1
    est, low, high = judge_equivalent(0.8 * 0.5 + 0.1 * 0.5, entry, 2000, 0)
    assert est == pytest.approx(0.5) and low < 0.5 < high and high - low < 0.1
    assert judge_equivalent(0.05, entry, 200, 0)[0] == 0.0 and judge_equivalent(0.95, entry, 200, 0)[0] == 1.0
    ci = AccuracyCI(0.45, 0.40, 0.50, 500, 100, 0)
    est2, low2, high2 = judge_equivalent(ci, entry, 2000, 0)
    assert est2 == pytest.approx(0.5) and high2 - low2 > high - low  # the raw accuracy's own spread counts too
    assert judge_equivalent(0.45, entry, 300, 7) == judge_equivalent(0.45, entry, 300, 7)


def test_judge_equivalent_refuses_an_uninformative_calibration():
    with pytest.raises(ValueError, match="no better than chance"):
        judge_equivalent(0.4, _entry(10, 10, 10, 10), 100, 0)
    with pytest.raises(ValueError, match="judge-correct and judge-wrong"):
        judge_equivalent(0.4, _entry(10, 0, 0, 0), 100, 0)


@given(
    st.integers(1, 500), st.integers(0, 500), st.integers(0, 500), st.integers(1, 500), st.floats(0, 1),
)
def test_judge_equivalent_recovers_the_true_accuracy(tp, fp, fn, tn, true_acc):
    tpr, fpr = tp / (tp + fn), fp / (fp + tn)
    if tpr <= fpr:
        return
    est, low, high = judge_equivalent(tpr * true_acc + fpr * (1 - true_acc), _entry(tp, fp, fn, tn), 50, 0)
    assert est == pytest.approx(true_acc, abs=1e-9) and 0.0 <= low <= high <= 1.0


def test_calibrate_the_fixture_without_the_semantic_grader():
    doc = calibrate([(str(TINY), load_graded(TINY))], semantic=False)
    assert list(doc["graders"]) == ["contains", "exact_match", "f1@0.3", "f1@0.5", "f1@0.7", "f1"]
    split = doc["split"]  # Alpha is held out, Beta and Gamma fit the thresholds
    assert (split["heldout_passages"], split["heldout_judgments"], split["fit_judgments"]) == (1, 2, 16)
    held = doc["graders"]["contains"]["heldout"]
    assert (held["tp"], held["fp"], held["fn"], held["tn"], held["agreement"]) == (1, 0, 0, 1, 1.0)
    f1 = doc["graders"]["f1"]
    assert f1["threshold_fitted"] and f1["grader"]["kind"] == "f1" and 0 < f1["grader"]["threshold"] <= 1


def test_cli_writes_a_calibration_that_replay_uses(tmp_path, capsys):
    out = tmp_path / "cal.json"
    assert main(["calibrate-grader", str(TINY), "--no-semantic", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "contains" in printed and "kappa" in printed and f"wrote {out}" in printed
    doc = load_calibration(out)
    assert doc["graders"]["exact_match"]["heldout"]["n"] == 2
    assert main(["replay", str(TINY), "--calibration", str(out), "--resamples", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    contains_adapter = next(line for line in lines if line.lstrip().startswith("contains") and "adapter" in line)
    assert contains_adapter.count("[") == 3  # macro CI, micro CI, judge-equivalent CI


def test_with_judge_equivalents_adds_estimates_to_calibrated_offline_rows_only():
    res = replay_run(load_graded(TINY), str(TINY), [("contains", ContainsGrader())], 50, 0)
    cal = {"graders": {"contains": _entry(40, 5, 10, 45), "gpt-4.1 (recorded)": _entry(40, 5, 10, 45)}}
    out = with_judge_equivalents(res, cal, 50, 0)
    assert [(r.grader, r.side, r.macro) for r in out.rows] == [(r.grader, r.side, r.macro) for r in res.rows]
    assert all(r.judge_equivalent is None for r in res.rows)  # replay alone never estimates
    for r in out.rows:
        if r.recorded is None:
            assert r.judge_equivalent == judge_equivalent(r.macro, cal["graders"]["contains"], 50, 0)
        else:  # the recorded judge is the reference, never corrected
            assert r.judge_equivalent is None
    assert out.gain == res.gain and out.mismatches() == res.mismatches()


def test_cli_without_files_or_shared_data_asks_for_files(monkeypatch, capsys):
    monkeypatch.setattr("seal_repro.replay.reference_graded_files", lambda: [])
    assert main(["calibrate-grader", "--no-semantic"]) == 2
    assert "pass the graded JSON files" in capsys.readouterr().err


def test_a_malformed_calibration_file_is_a_data_error(tmp_path):
    bad = tmp_path / "cal.json"
    bad.write_text(json.dumps({"format": "something else"}))
    with pytest.raises(DataError, match="not a grader calibration file"):
        load_calibration(bad)
    assert main(["replay", str(TINY), "--calibration", str(tmp_path / "missing.json")]) == 2


@pytest.mark.skipif(not REAL, reason="../shared/data/seal-squad/graded is absent")
def test_real_files_offline_graders_against_gpt41():
    doc = calibrate([(str(p), load_graded(p)) for p in REAL], semantic=False)
    g = doc["graders"]
    assert doc["split"]["fit_judgments"] + doc["split"]["heldout_judgments"] == 2 * 3 * 974
    assert 0.83 < g["contains"]["heldout"]["agreement"] < 0.90 and g["contains"]["heldout"]["kappa"] > 0.6
    agree = {name: g[name]["heldout"]["agreement"] for name in ("exact_match", "f1", "contains")}
    assert agree["exact_match"] < agree["f1"] < agree["contains"]
    assert g["exact_match"]["heldout"]["fp"] == 0  # an exact match the judge rejects would be a judge error
