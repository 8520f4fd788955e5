import json

from seal_repro.report.knowledge import flat_metrics, markdown_table, per_passage
from seal_repro.stats import accuracy_ci


def test_per_passage_groups_and_keeps_ungraded_as_none():
    recs = [{"passage_id": "a", "correct": True}, {"passage_id": "b", "correct": None}, {"passage_id": "a", "correct": False}]
    ids, groups = per_passage(recs)
    assert ids == ["a", "b"] and groups == [[1.0, 0.0], [None]]


def test_flat_metrics_and_table_show_paper_only_in_paper_column():
    ci = accuracy_ci([[1.0, 0.0], [1.0, 1.0]], "macro", 200, 0)
    m = flat_metrics({"passage": ci})
    assert m["passage.accuracy"] == 0.75 and m["passage.n_questions"] == 4
    assert all("." in k and not isinstance(v, dict) for k, v in m.items())
    table = markdown_table("t", {"passage": ci}, {"passage": 0.335}, ["note"])
    row = next(line for line in table.splitlines() if line.startswith("| Train on passage"))
    assert "| 75.0 |" in row and row.rstrip().endswith("| 33.5 |")


def test_ungraded_share_is_a_metric():
    ci = accuracy_ci([[1.0, None, 0.0], [None, 1.0, 1.0]], "macro", 100, 0)
    m = flat_metrics({"teacher_synthetic": ci})
    assert m["teacher_synthetic.n_ungraded"] == 2 and m["teacher_synthetic.ungraded_rate"] == round(2 / 6, 6)
    assert flat_metrics({"base": accuracy_ci([[1.0]], "macro", 10, 0)})["base.ungraded_rate"] == 0.0


def test_judge_equivalent_only_where_the_calibration_was_measured():
    """The correction was measured on GPT-4.1 verdicts of SQuAD answers: it applies to SQuAD-like data only."""
    from seal_repro.report.knowledge import judge_equivalents
    from seal_repro.stats import AccuracyCI

    from conftest import REPO

    calibration = json.loads((REPO / "results/calibration/grader_calibration.json").read_text())
    cis = {"teacher_synthetic": AccuracyCI(0.6, 0.5, 0.7, 100, 20, 0)}
    assert judge_equivalents(cis, calibration, "contains", 0, "fictional") == {}
    assert judge_equivalents(cis, calibration, "contains", 0, "seal_json")  # computed there
