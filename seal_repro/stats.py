"""Accuracy with passage-level bootstrap confidence intervals, and a paired test between two conditions.

Questions about one passage are not independent (a self-edit that misses the passage's main fact
fails several of them), so every resample draws whole *passages* — a cluster bootstrap — whether the
point estimate is the macro (paper) or the micro average.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

EXACT_MAX = 16  # up to 2**16 sign patterns are cheap to enumerate exactly


@dataclass(frozen=True)
class AccuracyCI:
    accuracy: float
    low: float
    high: float
    n_questions: int  # graded questions
    n_passages: int  # passages with at least one graded question
    n_ungraded: int


@dataclass(frozen=True)
class PairedTest:
    diff: float  # mean over passages of a - b
    low: float
    high: float
    p_value: float  # two-sided sign-flip permutation test
    sd: float = math.nan  # sample SD of the per-passage differences
    n: int = 0  # passages paired

    def passages_for_power(self, power: float = 0.8, alpha: float = 0.05) -> float:
        """Passages a paired test needs to detect this difference with `power` at two-sided `alpha`, by the normal
        approximation n = ((z_{1-alpha/2} + z_power) * sd / diff)^2; inf when the difference is 0 or undefined."""
        from statistics import NormalDist

        if not self.diff or math.isnan(self.diff) or math.isnan(self.sd):
            return math.inf
        z = NormalDist().inv_cdf(1 - alpha / 2) + NormalDist().inv_cdf(power)
        return math.ceil((z * self.sd / self.diff) ** 2)


def accuracy_ci(
    per_passage: Sequence[Sequence[float | None]],
    aggregation: Literal["macro", "micro"],
    resamples: int,
    seed: int,
    level: float = 0.95,
) -> AccuracyCI:
    """Point accuracy and percentile-bootstrap CI; `None` scores (ungraded) are left out.

    With no graded question at all the accuracy and bounds are NaN.
    """
    if aggregation not in ("macro", "micro"):
        raise ValueError(f"aggregation must be 'macro' or 'micro', not {aggregation!r}")
    sums, counts, n_ungraded = [], [], 0
    for scores in per_passage:
        graded = [float(s) for s in scores if s is not None]
        n_ungraded += len(scores) - len(graded)
        if graded:
            sums.append(sum(graded))
            counts.append(len(graded))
    s, c = np.asarray(sums, dtype=float), np.asarray(counts, dtype=float)
    n_q, n_p = int(c.sum()), len(c)
    if n_p == 0:
        return AccuracyCI(math.nan, math.nan, math.nan, 0, 0, n_ungraded)

    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n_p, size=(resamples, n_p))
    if aggregation == "macro":
        acc = s / c
        point, boot = acc.mean(), acc[idx].mean(axis=1)
    else:
        point, boot = s.sum() / c.sum(), s[idx].sum(axis=1) / c[idx].sum(axis=1)
    low, high = _percentile_interval(boot, level)
    return AccuracyCI(float(point), low, high, n_q, n_p, n_ungraded)


def paired_test(
    a: Sequence[float | None], b: Sequence[float | None], resamples: int, seed: int, level: float = 0.95
) -> PairedTest:
    """Compare two conditions scored on the same passages (paired by index).

    Pairs where either side is None/NaN (no graded question) are dropped. The CI is a bootstrap over
    passages of the mean difference; the p-value flips the sign of each passage's difference, exactly
    when at most 16 differences are nonzero, else by `resamples` Monte-Carlo draws.
    """
    if len(a) != len(b):
        raise ValueError(f"paired_test needs the same passages on both sides ({len(a)} vs {len(b)})")
    pairs = [(x, y) for x, y in zip(a, b) if x is not None and y is not None and not (math.isnan(x) or math.isnan(y))]
    if not pairs:
        return PairedTest(math.nan, math.nan, math.nan, math.nan)
    d = np.asarray([x - y for x, y in pairs], dtype=float)
    rng = np.random.default_rng(seed)
    boot = d[rng.integers(0, len(d), size=(resamples, len(d)))].mean(axis=1)
    low, high = _percentile_interval(boot, level)
    sd = float(d.std(ddof=1)) if len(d) > 1 else math.nan
    return PairedTest(float(d.mean()), low, high, _sign_flip_p(d, resamples, rng), sd, len(d))


def _sign_flip_p(d: np.ndarray, resamples: int, rng: np.random.Generator) -> float:
    # Zero differences are unchanged by a flip, so only nonzero ones decide the p-value.
    nz = d[d != 0]
    if nz.size == 0:
        return 1.0
    observed = abs(nz.sum())
    tol = 1e-12 * max(1.0, float(np.abs(nz).sum()))  # equal sums must count as "as extreme"
    if nz.size <= EXACT_MAX:
        bits = (np.arange(2**nz.size)[:, None] >> np.arange(nz.size)) & 1
        signs = 1.0 - 2.0 * bits
        return float(np.mean(np.abs(signs @ nz) >= observed - tol))
    signs = rng.choice((1.0, -1.0), size=(resamples, nz.size))
    count = int(np.sum(np.abs(signs @ nz) >= observed - tol))
    return (count + 1) / (resamples + 1)


def _percentile_interval(boot: np.ndarray, level: float) -> tuple[float, float]:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), not {level}")
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return float(low), float(high)
