"""The offline graders: SQuAD-style normalisation, contains / exact match / token F1.

They always decide (`correct` is never None) and need nothing but the strings.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from seal_repro.graders.types import GradeItem, GradeResult
from seal_repro.spec.evaluation import ContainsGrader, ExactMatchGrader, F1Grader

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


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


def grade_contains(spec: ContainsGrader, items: Sequence[GradeItem]) -> list[GradeResult]:
    out = []
    for it in items:
        ok = contains(it.prediction, it.golds)
        out.append(GradeResult(ok, float(ok), "contains" if ok else "no gold in answer"))
    return out


def grade_exact_match(spec: ExactMatchGrader, items: Sequence[GradeItem]) -> list[GradeResult]:
    out = []
    for it in items:
        ok = exact_match(it.prediction, it.golds)
        out.append(GradeResult(ok, float(ok), "exact match" if ok else "no exact match"))
    return out


def grade_f1(spec: F1Grader, items: Sequence[GradeItem]) -> list[GradeResult]:
    out = []
    for it in items:
        score = f1(it.prediction, it.golds)
        out.append(GradeResult(score >= spec.threshold, score, f"f1={score:.3f} (threshold {spec.threshold})"))
    return out
