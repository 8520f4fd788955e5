"""From rounds' answers to graded records: one record per answered question, graded by the spec's grader."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from seal_repro.data.records import Passage
from seal_repro.graders import GradeItem, check_ungraded, grade


def grade_records(spec, rounds: Sequence[dict], passages: Mapping[str, Passage], **extra) -> list[dict]:
    """Flatten rounds (records with `answers`) into one graded record per question; `extra` keys are added to
    each. An answer the grader could not decide (a judge failure) is `correct: None`, never counted as wrong; more
    of them than the grader allows stops the stage."""
    flat = []
    for rnd in rounds:
        p = passages[rnd["passage_id"]]
        qs = {q.id: q for q in p.questions}
        for a in rnd["answers"]:
            q = qs[a["question_id"]]
            flat.append({
                "condition": rnd["condition"], "passage_id": p.id, "self_edit_index": rnd["self_edit_index"],
                "repeat": rnd["repeat"], "question_id": q.id, "question": q.question, "golds": list(q.golds),
                "prediction": a["prediction"], "contains": a["contains"], "exact_match": a["exact_match"],
                "f1": a["f1"], "title": p.title,
            })
    grader = spec.evaluation.grader
    results = grade(grader, [GradeItem(r["question"], tuple(r["golds"]), r["prediction"], r.pop("title"))
                             for r in flat])
    for rec, res in zip(flat, results):
        rec["correct"] = res.correct  # None = ungraded (judge failure), never counted as wrong
        rec["grade_detail"] = res.detail
        rec.update(extra)
    check_ungraded(results, getattr(grader, "max_ungraded_rate", 0.0))
    return flat


def passage_accuracy(records: Sequence[dict]) -> dict[str, float]:
    """{passage id: share of its graded answers that are correct} (ungraded answers left out)."""
    marks: dict[str, list[bool]] = {}
    for r in records:
        if r["correct"] is not None:
            marks.setdefault(r["passage_id"], []).append(bool(r["correct"]))
    return {pid: sum(m) / len(m) for pid, m in marks.items()}
