"""Answer graders: SQuAD-style normalisation, contains / exact match / token F1, and one `grade` entry point.

Every grader turns (question, gold answers, model answer) into a `GradeResult`. Offline graders always
decide; only the LLM judge may leave an answer *ungraded* (`correct=None`), which statistics exclude
rather than count as wrong.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from seal_repro.spec.evaluation import ContainsGrader, ExactMatchGrader, F1Grader, JudgeGrader, SemanticGrader

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True)
class GradeItem:
    question: str
    golds: tuple[str, ...]
    prediction: str


@dataclass(frozen=True)
class GradeResult:
    correct: bool | None  # None = ungraded (judge failure), excluded from accuracy
    score: float
    detail: str


def normalize_answer(s: str) -> str:
    """Lowercase, drop punctuation and the articles a/an/the, collapse whitespace (the SQuAD recipe)."""
    s = s.lower().translate(_PUNCT)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def contains(pred: str, golds: Sequence[str]) -> bool:
    """True when some normalised gold occurs in the normalised prediction as a whole-word sequence."""
    p = f" {normalize_answer(pred)} "
    return any(g and f" {g} " in p for g in map(normalize_answer, golds))


def exact_match(pred: str, golds: Sequence[str]) -> bool:
    p = normalize_answer(pred)
    return any(g and g == p for g in map(normalize_answer, golds))


def _token_f1(pred_tokens: list[str], gold_tokens: list[str]) -> float:
    if not gold_tokens or not pred_tokens:
        return 0.0
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def f1(pred: str, golds: Sequence[str]) -> float:
    """SQuAD token F1, the best over the golds (an empty gold scores 0, never a free match)."""
    p = normalize_answer(pred).split()
    return max((_token_f1(p, normalize_answer(g).split()) for g in golds), default=0.0)


def offline_scores(prediction: str, golds: Sequence[str]) -> dict[str, float]:
    """All three offline metrics at once, for reports that show them side by side."""
    return {
        "contains": float(contains(prediction, golds)),
        "exact_match": float(exact_match(prediction, golds)),
        "f1": f1(prediction, golds),
    }


def _grade_offline(grader, item: GradeItem) -> GradeResult:
    if isinstance(grader, ContainsGrader):
        ok = contains(item.prediction, item.golds)
        return GradeResult(ok, float(ok), "contains" if ok else "no gold in answer")
    if isinstance(grader, ExactMatchGrader):
        ok = exact_match(item.prediction, item.golds)
        return GradeResult(ok, float(ok), "exact match" if ok else "no exact match")
    if isinstance(grader, F1Grader):
        score = f1(item.prediction, item.golds)
        return GradeResult(score >= grader.threshold, score, f"f1={score:.3f} (threshold {grader.threshold})")
    raise TypeError(f"unknown grader {type(grader).__name__}")


def grade(grader_spec, items: Sequence[GradeItem]) -> list[GradeResult]:
    """Grade `items` with the grader an evaluation spec names, results in the same order."""
    if isinstance(grader_spec, JudgeGrader):
        from seal_repro.judge import JudgeClient  # the judge imports this module; import late

        return JudgeClient(grader_spec).grade(items)
    if isinstance(grader_spec, SemanticGrader):
        from seal_repro.semantic import grade_semantic  # loads torch and the embedding model: only when asked

        return grade_semantic(grader_spec, items)
    return [_grade_offline(grader_spec, it) for it in items]
