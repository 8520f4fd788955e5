"""Answer graders and the one `grade` entry point that picks a grader by the spec's `kind`.

Every grader turns (question, gold answers, model answer) into a `GradeResult`. Offline graders always
decide; only the LLM judge may leave an answer *ungraded* (`correct=None`), which statistics exclude
rather than count as wrong.

The modules import each other only downward: `types` (GradeItem, GradeResult) <- `offline` (contains,
exact match, F1) <- `semantic` / `judge` <- this package, which only composes them in `GRADERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from seal_repro.graders.judge import check_ungraded, grade_judge, ungraded_rate
from seal_repro.graders.offline import (
    contains,
    exact_match,
    f1,
    grade_contains,
    grade_exact_match,
    grade_f1,
    normalize_answer,
    offline_scores,
)
from seal_repro.graders.semantic import grade_semantic
from seal_repro.graders.types import GradeItem, GradeResult

__all__ = [
    "GRADERS",
    "GradeItem",
    "GradeResult",
    "check_ungraded",
    "contains",
    "exact_match",
    "f1",
    "grade",
    "normalize_answer",
    "offline_scores",
    "ungraded_rate",
]

# spec `kind` -> grader(spec, items) -> one result per item, in order
GRADERS: dict[str, Callable[..., list[GradeResult]]] = {
    "contains": grade_contains,
    "exact_match": grade_exact_match,
    "f1": grade_f1,
    "semantic": grade_semantic,
    "judge": grade_judge,
}


def grade(grader_spec, items: Sequence[GradeItem]) -> list[GradeResult]:
    """Grade `items` with the grader an evaluation spec names, results in the same order."""
    kind = getattr(grader_spec, "kind", None)
    grader = GRADERS.get(kind) if isinstance(kind, str) else None
    if grader is None:
        raise TypeError(
            f"unknown grader kind {kind!r} ({type(grader_spec).__name__}); available: {', '.join(GRADERS)}"
        )
    return grader(grader_spec, items)
