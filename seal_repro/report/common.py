"""What both domains' reports share: matplotlib set-up, one figure style, percentages, the results table and the
bar chart beside the paper's numbers."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from seal_repro.paper import CONDITION_LABELS
from seal_repro.stats import AccuracyCI


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use (reports without figures skip it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, ax, title: str, path: Path) -> None:
    """Title, legend, layout and PNG for every figure of both domains' reports."""
    plt = pyplot()
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pct(x: float | None) -> str:
    """A share as a percentage with one decimal; — for none (or NaN)."""
    return "—" if x is None or x != x else f"{100 * x:.1f}"


def finite(metrics: Mapping) -> dict:
    """The metrics with a value: NaN is not JSON and `dvc metrics` chokes on it, so a rate with nothing behind it
    is left out."""
    return {k: v for k, v in metrics.items() if v is not None and v == v}


def label(condition: str) -> str:
    return CONDITION_LABELS.get(condition, condition)


def markdown_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]], notes: Sequence[str]) -> str:
    """`# title`, a table whose first column is left-aligned and the others right-aligned, then notes as bullets."""
    lines = [f"# {title}", "", "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def bar_chart(path: Path, cis: Mapping[str, AccuracyCI], paper: Mapping[str, float], title: str, *,
              ylabel: str = "accuracy (%)", paper_label: str = "paper", ylim: tuple[float, float] | None = None) -> None:
    """This run's value per condition with its 95% CI, beside the paper's (a condition without one: no bar)."""
    plt = pyplot()
    conds = list(cis)
    x = range(len(conds))

    def val(v: float) -> float:
        return 0.0 if v is None or math.isnan(v) else 100 * v

    acc = [val(cis[c].accuracy) for c in conds]
    err = [[max(0.0, a - val(cis[c].low)) for a, c in zip(acc, conds)],
           [max(0.0, val(cis[c].high) - a) for a, c in zip(acc, conds)]]
    fig, ax = plt.subplots(figsize=(1.8 * len(conds) + 2, 4))
    ax.bar([i - 0.2 for i in x], acc, width=0.4, yerr=err, capsize=4, label="this run (95% CI)")
    ax.bar([i + 0.2 for i in x], [100 * paper[c] if c in paper else 0 for c in conds], width=0.4, alpha=0.5,
           label=paper_label)
    ax.set_xticks(list(x), [label(c).replace(" + ", "\n+ ") for c in conds], fontsize=8)
    ax.set_ylabel(ylabel)
    if ylim:
        ax.set_ylim(*ylim)
    save_figure(fig, ax, title, path)
