"""Replaying the paper's table from graded runs: a hand-written fixture, the CLI, and the real files when present."""

import json
from pathlib import Path

import pytest

from seal_repro.cli import main
from seal_repro.errors import DataError
from seal_repro.replay import (
    judgments,
    load_graded,
    per_passage,
    reference_graded_files,
    replay_run,
    same_to_4,
)
from seal_repro.spec.evaluation import ContainsGrader, ExactMatchGrader

TINY = Path(__file__).parent / "assets" / "graded" / "tiny.json"
REAL = reference_graded_files()
needs_real = pytest.mark.skipif(not REAL, reason="../shared/data/seal-squad/graded is absent")


def test_fixture_judgments_group_by_passage_pooling_completions():
    judged = judgments(load_graded(TINY))
    assert len(judged) == 18  # 9 answered questions (Gamma has 2 completions x 2), before and after
    groups = per_passage(judged, [j.judge for j in judged], "adapter")
    assert groups == [[1.0], [1.0, 1.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]]


def test_fixture_recomputes_the_recorded_row_and_macro_differs_from_micro():
    res = replay_run(load_graded(TINY), str(TINY), resamples=200, seed=0)
    base, adapter = res.rows
    assert base.macro.accuracy == pytest.approx(0.25) and base.micro.accuracy == pytest.approx(3 / 9)
    assert adapter.macro.accuracy == pytest.approx(2.5 / 3) and adapter.micro.accuracy == pytest.approx(7 / 9)
    assert base.matches and adapter.matches and res.gain_matches and res.mismatches() == []
    assert res.gain.diff == pytest.approx(2.5 / 3 - 0.25)
    assert (res.n_passages, res.n_questions) == (3, 9)


def test_offline_graders_regrade_the_recorded_answers():
    res = replay_run(load_graded(TINY), str(TINY), [("contains", ContainsGrader()), ("em", ExactMatchGrader())], 100, 0)
    by = {(r.grader, r.side): r for r in res.rows}
    # contains misses the paraphrase "the municipal council" that the judge accepted
    assert by["contains", "adapter"].macro.accuracy == pytest.approx(0.75)
    assert by["contains", "adapter"].micro.accuracy == pytest.approx(6 / 9)
    assert by["em", "baseline"].macro.accuracy == pytest.approx(0.25 / 3)
    assert by["contains", "adapter"].recorded is None and by["contains", "adapter"].matches is None


def test_same_to_4_is_the_printed_rounding():
    assert same_to_4(0.396826, 0.3968) and same_to_4(0.33514, 0.3351)
    assert not same_to_4(0.39686, 0.3968)


def test_cli_prints_recorded_and_recomputed(capsys):
    assert main(["replay", str(TINY), "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert "0.2500  0.2500 [" in out and "0.8333  0.8333 [" in out and "✓" in out
    assert "contains" in out and "f1@0.5" in out and "all recorded accuracies recomputed" in out


def test_cli_exits_1_when_the_recorded_number_differs(tmp_path, capsys):
    doc = json.loads(TINY.read_text())
    doc["overall"]["adapter_mean_accuracy"] = 0.8
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    assert main(["replay", str(bad), "--resamples", "20"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "adapter: recorded 0.8000, recomputed 0.8333" in out


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "no such file"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "top level: Input should be a valid dictionary"),
        ('{"overall": {"baseline_mean_accuracy": 0.1, "adapter_mean_accuracy": 0.2}, "articles": []}', "articles:"),
    ],
)
def test_cli_bad_files_give_one_line_errors_and_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "graded.json"
    if content is not None:
        path.write_text(content)
    assert main(["replay", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and message in err[0]


def test_malformed_verdict_names_its_location(tmp_path):
    doc = json.loads(TINY.read_text())
    doc["articles"][1]["completions"][0]["questions"][2]["adapter_correct"] = "yes"
    del doc["articles"][2]["title"]
    path = tmp_path / "graded.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError) as err:
        load_graded(path)
    assert any("articles.1.completions.0.questions.2.adapter_correct" in line for line in err.value.lines)
    assert any("articles.2.title: Field required" in line for line in err.value.lines)


@needs_real
def test_real_files_recompute_the_papers_numbers_to_4_decimals():
    for path in REAL:
        res = replay_run(load_graded(path), str(path), resamples=50, seed=0)
        assert res.mismatches() == [], res.mismatches()
        assert all(r.matches for r in res.rows) and res.gain_matches
    base = next(p for p in REAL if p.name == "base.json")
    adapter = replay_run(load_graded(base), str(base), resamples=20, seed=0).rows[1]
    # the paper's 0.3968 is the macro average; the micro average over questions is higher
    assert f"{adapter.macro.accuracy:.4f}" == "0.3968" and f"{adapter.micro.accuracy:.4f}" == "0.4066"
