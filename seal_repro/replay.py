"""Replay the paper's knowledge-incorporation table from the reference's released, GPT-4.1-graded runs.

A graded file (the SEAL reference's `query_server` output) holds, per article, the self-edit completions
and, per question, the gold answer, the answer before adaptation (`baseline_answer`) and after it
(`adapter_answer`), with GPT-4.1's verdicts on both. Its `overall` block holds the numbers the paper
prints. This module recomputes them with the toolkit's own aggregation (`stats.accuracy_ci`: macro =
mean over articles of per-article accuracy, which is what the paper reports; micro = over questions)
and regrades the same recorded answers with offline graders, side by side.

An article's accuracy pools all its completions' questions; with the reference's k=1 completion that
is the per-completion mean it records.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError

from seal_repro.errors import DataError
from seal_repro.graders import GradeItem, grade
from seal_repro.stats import AccuracyCI, PairedTest, accuracy_ci, paired_test

SIDES = ("baseline", "adapter")  # before adaptation, after it
JUDGE_LABEL = "gpt-4.1 (recorded)"
REFERENCE_NAMES = ("base", "gpt4_1", "naive")  # passage + base-model / GPT-4.1 / no synthetic data
MAX_PROBLEM_LINES = 20


class _Reference(BaseModel):
    # The reference writes more than we read (timings, per-article stats, the prompt): ignore it.
    model_config = ConfigDict(extra="ignore", frozen=True)


class GradedQuestion(_Reference):
    question: str
    answer: str
    baseline_answer: str
    adapter_answer: str
    baseline_correct: StrictBool
    adapter_correct: StrictBool


class GradedCompletion(_Reference):
    text: str = ""
    questions: list[GradedQuestion] = Field(min_length=1)


class GradedArticle(_Reference):
    title: str
    context: str
    completions: list[GradedCompletion] = Field(min_length=1)


class RecordedOverall(_Reference):
    baseline_mean_accuracy: float
    adapter_mean_accuracy: float
    mean_gain: float | None = None


class GradedRun(_Reference):
    overall: RecordedOverall
    articles: list[GradedArticle] = Field(min_length=1)


@dataclass(frozen=True)
class Judgment:
    """One recorded answer with GPT-4.1's verdict on it."""

    passage: int  # the article's index in its file
    title: str
    side: str  # "baseline" or "adapter"
    item: GradeItem
    judge: bool


def load_graded(path: str | Path) -> GradedRun:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a graded JSON file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON: {err.msg} (line {err.lineno}, column {err.colno})") from None
    try:
        return GradedRun.model_validate(data)
    except ValidationError as err:
        lines = []
        for e in err.errors():
            where = ".".join(str(p) for p in e["loc"]) or "top level"
            lines.append(f"{path}: {where}: {e['msg']}")
        if len(lines) > MAX_PROBLEM_LINES:
            lines = [*lines[:MAX_PROBLEM_LINES], f"… and {len(lines) - MAX_PROBLEM_LINES} more problems"]
        raise DataError(lines) from None


def reference_graded_files(repo_root: str | Path | None = None) -> list[Path]:
    """The reference's graded runs under `<repo>/../shared`, those that exist (none on a user's machine)."""
    root = Path(repo_root) if repo_root else Path(__file__).resolve().parents[1]
    folder = root.parent / "shared" / "data" / "seal-squad" / "graded"
    return [p for p in (folder / f"{n}.json" for n in REFERENCE_NAMES) if p.is_file()]


def judgments(run: GradedRun) -> list[Judgment]:
    out = []
    for i, art in enumerate(run.articles):
        for comp in art.completions:
            for q in comp.questions:
                for side in SIDES:
                    item = GradeItem(q.question, (q.answer,), getattr(q, f"{side}_answer"))
                    out.append(Judgment(i, art.title, side, item, getattr(q, f"{side}_correct")))
    return out


def per_passage(judged: Sequence[Judgment], values: Sequence[float], side: str) -> list[list[float]]:
    """`values` (one per judgment) grouped by passage, keeping only `side`; passages in file order."""
    groups: dict[int, list[float]] = {}
    for j, v in zip(judged, values):
        if j.side == side:
            groups.setdefault(j.passage, []).append(float(v))
    return [groups[k] for k in sorted(groups)]


def same_to_4(a: float, b: float) -> bool:
    """Equal as the paper prints them, to 4 decimals."""
    return f"{a:.4f}" == f"{b:.4f}"


@dataclass(frozen=True)
class ReplayRow:
    grader: str
    side: str
    macro: AccuracyCI
    micro: AccuracyCI
    recorded: float | None = None  # only for the recorded judge
    # (estimate, low, high), offline graders with a calibration entry (calibration.with_judge_equivalents)
    judge_equivalent: tuple[float, float, float] | None = None

    @property
    def matches(self) -> bool | None:
        return None if self.recorded is None else same_to_4(self.macro.accuracy, self.recorded)


@dataclass(frozen=True)
class FileReplay:
    path: str
    n_passages: int
    n_questions: int
    rows: list[ReplayRow]
    gain: PairedTest  # the judge's adapter - baseline, paired by passage
    recorded_gain: float | None

    @property
    def gain_matches(self) -> bool | None:
        return None if self.recorded_gain is None else same_to_4(self.gain.diff, self.recorded_gain)

    def mismatches(self) -> list[str]:
        bad = [
            f"{self.path}: {r.side}: recorded {r.recorded:.4f}, recomputed {r.macro.accuracy:.4f}"
            for r in self.rows if r.matches is False
        ]
        if self.gain_matches is False:
            bad.append(f"{self.path}: gain: recorded {self.recorded_gain:.4f}, recomputed {self.gain.diff:.4f}")
        return bad


def replay_run(
    run: GradedRun,
    path: str,
    graders: Sequence[tuple[str, object]] = (),
    resamples: int = 2000,
    seed: int = 0,
) -> FileReplay:
    """Recompute the recorded row and regrade the recorded answers with each (name, grader spec).

    Judge-equivalent estimates of the offline rows need a calibration, which builds on this module:
    `calibration.with_judge_equivalents` adds them to the result.
    """
    judged = judgments(run)
    verdicts = [j.judge for j in judged]
    rows, passage_acc = [], {}
    for side in SIDES:
        groups = per_passage(judged, verdicts, side)
        passage_acc[side] = [float(np.mean(g)) for g in groups]
        rows.append(_row(JUDGE_LABEL, side, groups, resamples, seed, getattr(run.overall, f"{side}_mean_accuracy")))
    gain = paired_test(passage_acc["adapter"], passage_acc["baseline"], resamples, seed)
    for name, spec in graders:
        correct = [bool(r.correct) for r in grade(spec, [j.item for j in judged])]
        for side in SIDES:
            rows.append(_row(name, side, per_passage(judged, correct, side), resamples, seed))
    n_questions = sum(j.side == SIDES[0] for j in judged)
    return FileReplay(path, len(run.articles), n_questions, rows, gain, run.overall.mean_gain)


def _row(name: str, side: str, groups, resamples: int, seed: int, recorded: float | None = None) -> ReplayRow:
    return ReplayRow(
        name, side,
        accuracy_ci(groups, "macro", resamples, seed),
        accuracy_ci(groups, "micro", resamples, seed),
        recorded=recorded,
    )
