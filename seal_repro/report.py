"""Results for the knowledge table: flat metrics JSON, a Markdown table beside the paper, a bar chart."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from seal_repro.paper import CONDITION_LABELS
from seal_repro.stats import AccuracyCI, accuracy_ci


def per_passage(records: list[dict]) -> tuple[list[str], list[list[float | None]]]:
    """Correctness grouped by passage (over questions × self-edits × repeats), passages in first-seen order."""
    groups: dict[str, list] = defaultdict(list)
    for r in records:
        c = r["correct"]
        groups[r["passage_id"]].append(None if c is None else float(c))
    ids = list(groups)
    return ids, [groups[i] for i in ids]


def condition_ci(records: list[dict], evaluation, seed: int) -> AccuracyCI:
    _, groups = per_passage(records)
    return accuracy_ci(groups, evaluation.aggregation, evaluation.bootstrap_resamples, seed)


def flat_metrics(cis: dict[str, AccuracyCI], prefix: str = "") -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for cond, ci in cis.items():
        k = f"{prefix}{cond}"
        out[f"{k}.accuracy"] = round(ci.accuracy, 6)
        out[f"{k}.ci_low"] = round(ci.low, 6)
        out[f"{k}.ci_high"] = round(ci.high, 6)
        out[f"{k}.n_questions"] = ci.n_questions
        out[f"{k}.n_passages"] = ci.n_passages
        out[f"{k}.n_ungraded"] = ci.n_ungraded
    return out


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def markdown_table(title: str, cis: dict[str, AccuracyCI], paper: dict[str, float], notes: list[str]) -> str:
    lines = [f"# {title}", "", "| condition | this run (%) | 95% CI | n questions | paper (%) |", "|---|---:|---:|---:|---:|"]
    for cond, ci in cis.items():
        lines.append(
            f"| {CONDITION_LABELS.get(cond, cond)} | {_pct(ci.accuracy)} | {_pct(ci.low)}–{_pct(ci.high)} "
            f"| {ci.n_questions} | {_pct(paper.get(cond))} |"
        )
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def bar_chart(path: Path, cis: dict[str, AccuracyCI], paper: dict[str, float], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conds = list(cis)
    x = range(len(conds))
    acc = [100 * cis[c].accuracy for c in conds]
    err = [[100 * (cis[c].accuracy - cis[c].low) for c in conds], [100 * (cis[c].high - cis[c].accuracy) for c in conds]]
    fig, ax = plt.subplots(figsize=(1.8 * len(conds) + 2, 4))
    ax.bar([i - 0.2 for i in x], acc, width=0.4, yerr=err, capsize=4, label="this run (95% CI)")
    pap = [100 * paper[c] if c in paper else 0 for c in conds]
    ax.bar([i + 0.2 for i in x], pap, width=0.4, alpha=0.5, label="paper")
    ax.set_xticks(list(x), [CONDITION_LABELS.get(c, c).replace(" + ", "\n+ ") for c in conds], fontsize=8)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
