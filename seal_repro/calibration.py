"""How far offline graders agree with GPT-4.1, measured on held-out passages, and the correction that turns an
offline accuracy into a judge-equivalent estimate.

Every recorded answer (before and after adaptation) with GPT-4.1's verdict is one judgment. Passages are
split in two by a hash of their title, so all passages of one Wikipedia article fall in the same half and
the same half in every file; graders with a threshold get it fitted on the *fit* half (best agreement) and
everything is reported on the *held-out* half.

Judge-equivalent accuracy (`judge_equivalent`): a grader that says "correct" with probability TPR when
the judge would, and FPR when the judge would not, turns a true (judge) accuracy `a` into an expected raw
accuracy `r = TPR * a + FPR * (1 - a)`. Inverting,

    a = (r - FPR) / (TPR - FPR),   clipped to [0, 1],

with TPR = TP / (TP + FN) and FPR = FP / (FP + TN) from the held-out confusion counts. It assumes the
grader errs at the same rates on the new answers as on the calibration answers. `with_judge_equivalents`
adds these estimates to the offline rows of a replay (this module builds on `replay`, never the reverse).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from pydantic import TypeAdapter, ValidationError

from seal_repro.errors import DataError
from seal_repro.graders import grade
from seal_repro.io import read_json
from seal_repro.replay import FileReplay, GradedRun, Judgment, judgments
from seal_repro.spec.evaluation import ContainsGrader, ExactMatchGrader, F1Grader, Grader, SemanticGrader
from seal_repro.stats import AccuracyCI

FORMAT = "seal-repro grader calibration v1"
SPLIT_METHOD = "first byte of sha256(title) even = fit half, odd = held-out half"
FIXED_F1 = (0.3, 0.5, 0.7)
_GRADER = TypeAdapter(Grader)


def half_of(title: str) -> int:
    """0 = fit half, 1 = held-out half; stable across runs, machines and files."""
    return hashlib.sha256(title.encode("utf-8")).digest()[0] & 1


@dataclass(frozen=True)
class Agreement:
    """A grader's verdicts against the judge's; "positive" means judged correct."""

    tp: int  # both say correct
    fp: int  # grader correct, judge wrong
    fn: int  # grader wrong, judge correct
    tn: int  # both say wrong

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.fn + self.tn

    @property
    def agreement(self) -> float:
        return _ratio(self.tp + self.tn, self.n)

    @property
    def kappa(self) -> float:
        """Cohen's κ: agreement beyond what two raters with these yes-rates reach by chance."""
        n = self.n
        if n == 0:
            return math.nan
        chance = ((self.tp + self.fp) * (self.tp + self.fn) + (self.fn + self.tn) * (self.fp + self.tn)) / n**2
        return math.nan if chance == 1 else (self.agreement - chance) / (1 - chance)

    @property
    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)

    @property
    def recall(self) -> float:  # = TPR
        return _ratio(self.tp, self.tp + self.fn)

    @property
    def fpr(self) -> float:
        return _ratio(self.fp, self.fp + self.tn)

    @property
    def grader_accuracy(self) -> float:
        return _ratio(self.tp + self.fp, self.n)

    @property
    def judge_accuracy(self) -> float:
        return _ratio(self.tp + self.fn, self.n)

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("n", "agreement", "kappa", "precision", "recall", "fpr", "grader_accuracy", "judge_accuracy"):
            value = getattr(self, key)
            out[key] = None if isinstance(value, float) and math.isnan(value) else value
        return out


def _ratio(a: float, b: float) -> float:
    return a / b if b else math.nan


def agreement_stats(grader: Sequence[bool], judge: Sequence[bool]) -> Agreement:
    g, j = np.asarray(grader, dtype=bool), np.asarray(judge, dtype=bool)
    if g.shape != j.shape:
        raise ValueError(f"need one grader verdict per judge verdict ({g.size} vs {j.size})")
    return Agreement(int(np.sum(g & j)), int(np.sum(g & ~j)), int(np.sum(~g & j)), int(np.sum(~g & ~j)))


def fit_threshold(scores: Sequence[float], judge: Sequence[bool]) -> float:
    """The cut between two observed scores that agrees best with the judge (`score >= cut` = correct).

    Ties go to the lowest cut; with fewer than two distinct scores, 0.5.
    """
    s, j = np.asarray(scores, dtype=float), np.asarray(judge, dtype=bool)
    levels = np.unique(s)
    if levels.size < 2:
        return 0.5
    cuts = (levels[:-1] + levels[1:]) / 2
    pos, neg = np.sort(s[j]), np.sort(s[~j])
    # agreement(cut) = judge-correct at or above the cut + judge-wrong below it
    hits = (pos.size - np.searchsorted(pos, cuts, side="left")) + np.searchsorted(neg, cuts, side="left")
    return float(cuts[int(np.argmax(hits))])


def candidate_graders(semantic: bool = True) -> list[tuple[str, object, bool]]:
    """(name, grader spec, threshold fitted?) for every offline grader the calibration compares."""
    out: list[tuple[str, object, bool]] = [
        ("contains", ContainsGrader(), False),
        ("exact_match", ExactMatchGrader(), False),
    ]
    out += [(f"f1@{t}", F1Grader(threshold=t), False) for t in FIXED_F1]
    out.append(("f1", F1Grader(), True))
    if semantic:
        out.append(("semantic", SemanticGrader(), True))
    return out


def calibrate(runs: Sequence[tuple[str, GradedRun]], semantic: bool = True) -> dict:
    """The calibration document: per grader, its (fitted) spec and its agreement on both halves."""
    judged: list[Judgment] = [j for _, run in runs for j in judgments(run)]
    half = np.array([half_of(j.title) for j in judged])
    truth = np.array([j.judge for j in judged])
    fit, held = half == 0, half == 1
    if not fit.any() or not held.any():
        raise DataError("calibration needs passages in both halves of the split; give more passages")
    graders = {}
    for name, spec, fitted in candidate_graders(semantic):
        results = grade(spec, [j.item for j in judged])
        if fitted:
            scores = np.array([r.score for r in results])
            # rounded before use, so the stored spec reproduces these numbers exactly
            threshold = max(round(fit_threshold(scores[fit], truth[fit]), 3), 0.001)
            spec = spec.model_copy(update={"threshold": min(threshold, 1.0)})
            verdicts = scores >= spec.threshold
        else:
            verdicts = np.array([bool(r.correct) for r in results])
        graders[name] = {
            "grader": spec.model_dump(mode="json"),
            "threshold_fitted": fitted,
            "fit": agreement_stats(verdicts[fit], truth[fit]).to_dict(),
            "heldout": agreement_stats(verdicts[held], truth[held]).to_dict(),
        }
    return {
        "format": FORMAT,
        "files": [{"path": str(path), "passages": len(run.articles)} for path, run in runs],
        "split": {
            "method": SPLIT_METHOD,
            "fit_judgments": int(fit.sum()),
            "heldout_judgments": int(held.sum()),
            "fit_passages": sum(half_of(a.title) == 0 for _, run in runs for a in run.articles),
            "heldout_passages": sum(half_of(a.title) == 1 for _, run in runs for a in run.articles),
        },
        "graders": graders,
    }


def load_calibration(path: str | Path) -> dict:
    path = Path(path)
    try:
        doc = read_json(path)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except (OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable calibration file: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("graders"), dict):
        raise DataError(f"{path}: not a grader calibration file (write one with `seal-repro calibrate-grader`)")
    for name, entry in doc["graders"].items():
        try:
            _GRADER.validate_python(entry["grader"])
            _counts(entry)
        except (KeyError, TypeError, ValidationError, ValueError) as err:
            raise DataError(f"{path}: graders.{name}: malformed entry ({type(err).__name__})") from None
    return doc


def grader_spec(entry: dict):
    """The grader spec an entry was measured with (thresholds as fitted)."""
    return _GRADER.validate_python(entry["grader"])


def _counts(entry: dict) -> tuple[int, int, int, int]:
    held = entry["heldout"]
    counts = tuple(int(held[k]) for k in ("tp", "fp", "fn", "tn"))
    if min(counts) < 0:
        raise ValueError("negative count")
    return counts


def judge_equivalent(
    raw_accuracy: float | AccuracyCI, calibration_entry: dict, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(estimate, low, high) of the accuracy GPT-4.1 would give, from a grader's raw accuracy.

    estimate = clip((raw - FPR) / (TPR - FPR), 0, 1), TPR and FPR from the entry's held-out counts.
    The interval is a percentile bootstrap that redraws the calibration counts (judge-correct and
    judge-wrong judgments resampled separately: TP ~ Binomial(TP + FN, TPR), FP ~ Binomial(FP + TN, FPR))
    and, when `raw_accuracy` is an AccuracyCI, the raw accuracy too (normal, sd = CI width / 2z); a plain
    float is taken as exact. Draws where the redrawn grader is no better than chance are dropped.
    """
    tp, fp, fn, tn = _counts(calibration_entry)
    pos, neg = tp + fn, fp + tn
    if pos == 0 or neg == 0:
        raise ValueError("the calibration needs judge-correct and judge-wrong judgments to estimate TPR and FPR")
    tpr, fpr = tp / pos, fp / neg
    if tpr <= fpr:
        raise ValueError(f"grader no better than chance on the calibration (TPR {tpr:.3f} <= FPR {fpr:.3f})")
    if isinstance(raw_accuracy, AccuracyCI):
        raw, z = raw_accuracy.accuracy, _z(level)
        sd = (raw_accuracy.high - raw_accuracy.low) / (2 * z) if raw_accuracy.high > raw_accuracy.low else 0.0
    else:
        raw, sd = float(raw_accuracy), 0.0
    if math.isnan(raw):
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    tpr_b = rng.binomial(pos, tpr, n_boot) / pos
    fpr_b = rng.binomial(neg, fpr, n_boot) / neg
    raw_b = rng.normal(raw, sd, n_boot) if sd > 0 else np.full(n_boot, raw)
    ok = tpr_b > fpr_b
    est_b = np.clip((raw_b[ok] - fpr_b[ok]) / (tpr_b[ok] - fpr_b[ok]), 0.0, 1.0)
    alpha = (1 - level) / 2
    low, high = np.quantile(est_b, [alpha, 1 - alpha]) if est_b.size else (math.nan, math.nan)
    estimate = min(max((raw - fpr) / (tpr - fpr), 0.0), 1.0)
    return float(estimate), float(low), float(high)


def _z(level: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + level / 2)


def with_judge_equivalents(result: FileReplay, calibration: dict, resamples: int = 2000, seed: int = 0) -> FileReplay:
    """`result` with a judge-equivalent estimate of the macro accuracy on each offline grader's rows that the
    calibration document (`calibrate`) has an entry for, by the grader's name."""
    entries = calibration.get("graders", {})
    rows = []
    for row in result.rows:
        entry = entries.get(row.grader) if row.recorded is None else None
        if entry is not None:
            try:
                je = judge_equivalent(row.macro, entry, resamples, seed)
            except ValueError:  # no better than chance on the calibration: nothing to correct with
                je = None
            row = replace(row, judge_equivalent=je)
        rows.append(row)
    return replace(result, rows=rows)
