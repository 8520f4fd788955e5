"""SQuAD-style answer normalisation and the offline graders."""

from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seal_repro.graders import GRADERS, GradeItem, contains, exact_match, f1, grade, normalize_answer, offline_scores
from seal_repro.spec.evaluation import ContainsGrader, ExactMatchGrader, F1Grader, Grader


@pytest.mark.parametrize(
    "raw, norm",
    [
        ("The  Quick, brown-fox!", "quick brownfox"),
        ("An apple a day", "apple day"),
        ("  THEATRE  ", "theatre"),  # 'the' inside a word stays
        ("1,582", "1582"),
        ("", ""),
    ],
)
def test_normalize_answer(raw, norm):
    assert normalize_answer(raw) == norm


def test_contains_matches_whole_words_only():
    assert contains("It opened in 1874.", ["1874"])
    assert contains("Designed by Ilsa Marrow, an engineer", ["ilsa marrow"])
    assert not contains("It opened in 18745.", ["1874"])
    assert not contains("Marrowbone", ["Marrow"])
    assert contains("no idea", ["1874", "idea"])  # any gold


def test_empty_gold_never_matches():
    assert not contains("anything at all", ["", "the"])  # 'the' normalises to empty
    assert not exact_match("", [""])
    assert f1("", [""]) == 0.0


def test_exact_match_ignores_case_punctuation_and_articles():
    assert exact_match("The Normans.", ["normans"])
    assert not exact_match("The Normans and Franks", ["Normans"])


def test_f1_known_values_and_max_over_golds():
    assert f1("the big red dog", ["red dog"]) == pytest.approx(0.8)  # p=2/3, r=1
    assert f1("red", ["red dog", "red"]) == 1.0
    assert f1("blue cat", ["red dog"]) == 0.0


def test_offline_scores():
    assert offline_scores("in 1874", ["1874"]) == {"contains": 1.0, "exact_match": 0.0, "f1": pytest.approx(2 / 3)}


def test_grade_dispatches_on_the_spec():
    items = [GradeItem("q?", ("red dog",), "a big red dog"), GradeItem("q?", ("red dog",), "dog")]
    assert [r.correct for r in grade(ContainsGrader(), items)] == [True, False]
    assert [r.correct for r in grade(ExactMatchGrader(), items)] == [False, False]
    res = grade(F1Grader(threshold=0.6), items)
    assert [r.correct for r in res] == [True, True]  # 0.8 and 0.667
    assert res[1].score == pytest.approx(2 / 3) and "f1=0.667" in res[1].detail
    assert [r.correct for r in grade(F1Grader(threshold=0.7), items)] == [True, False]


@given(st.text(max_size=30), st.lists(st.text(max_size=15), min_size=1, max_size=3))
def test_grader_invariants(pred, golds):
    n = normalize_answer(pred)
    assert normalize_answer(n) == n
    assert 0.0 <= f1(pred, golds) <= 1.0
    if exact_match(pred, golds):
        assert contains(pred, golds) and f1(pred, golds) == 1.0
    if n:
        assert contains(pred, [pred]) and exact_match(pred, [pred])


def test_grade_has_one_table_and_a_miss_names_the_kinds():
    kinds = {m.model_fields["kind"].default for m in get_args(get_args(Grader)[0])}
    assert set(GRADERS) == kinds  # every grader a spec can name, and no other
    with pytest.raises(TypeError, match="contains, exact_match, f1, semantic, judge"):
        grade(object(), [])
