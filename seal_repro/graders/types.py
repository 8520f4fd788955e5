"""What every grader takes and returns: one `GradeItem` in, one `GradeResult` out.

A leaf module (it imports no other grader module), so the offline graders, the semantic grader and the
LLM judge can all build on it without importing one another.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GradeItem:
    question: str
    golds: tuple[str, ...]
    prediction: str
    title: str | None = None  # the passage's title, for a judge prompt that shows it ({title}); None: unknown


@dataclass(frozen=True)
class GradeResult:
    correct: bool | None  # None = ungraded (judge failure), excluded from accuracy
    score: float
    detail: str
