"""Results for the knowledge table: flat metrics JSON, a Markdown table beside the paper, a bar chart."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from seal_repro.paper import CONDITION_LABELS
from seal_repro.stats import AccuracyCI, accuracy_ci


def pyplot():
    """matplotlib's pyplot on the file-only Agg backend, imported on first use (stages without figures skip it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, ax, title: str, path: Path) -> None:
    """Title, legend, layout and PNG for every figure of both domains' reports (one look, one place)."""
    import matplotlib.pyplot as plt

    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


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


def flat_metrics(cis: dict[str, AccuracyCI], prefix: str = "",
                 judge_eq: dict[str, tuple[float, float, float]] | None = None) -> dict[str, float | int]:
    out: dict[str, float | int] = {}
    for cond, ci in cis.items():
        if judge_eq and cond in judge_eq:
            est, lo, hi = judge_eq[cond]
            out[f"{prefix}{cond}.judge_equivalent"] = round(est, 6)
            out[f"{prefix}{cond}.judge_equivalent_low"] = round(lo, 6)
            out[f"{prefix}{cond}.judge_equivalent_high"] = round(hi, 6)
        k = f"{prefix}{cond}"
        out[f"{k}.accuracy"] = round(ci.accuracy, 6)
        out[f"{k}.ci_low"] = round(ci.low, 6)
        out[f"{k}.ci_high"] = round(ci.high, 6)
        out[f"{k}.n_questions"] = ci.n_questions
        out[f"{k}.n_passages"] = ci.n_passages
        out[f"{k}.n_ungraded"] = ci.n_ungraded
        asked = ci.n_questions + ci.n_ungraded
        out[f"{k}.ungraded_rate"] = round(ci.n_ungraded / asked, 6) if asked else 0.0
    return out


def judge_equivalents(cis: dict[str, AccuracyCI], calibration: dict | None, grader_kind: str,
                      seed: int) -> dict[str, tuple[float, float, float]]:
    """GPT-4.1-equivalent accuracy per condition, corrected with the grader's calibration confusion matrix.

    Empty when there is no calibration entry for this grader (e.g. the judge itself, or an f1 threshold
    that was not calibrated); the CI includes the calibration counts' uncertainty (see calibration.py).
    """
    from seal_repro.calibration import judge_equivalent

    entry = (calibration or {}).get("graders", {}).get(grader_kind)
    if entry is None:
        return {}
    out = {}
    for cond, ci in cis.items():
        try:
            out[cond] = judge_equivalent(ci, entry, n_boot=2000, seed=seed)
        except ValueError:
            continue
    return out


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def markdown_table(title: str, cis: dict[str, AccuracyCI], paper: dict[str, float], notes: list[str],
                   judge_eq: dict[str, tuple[float, float, float]] | None = None) -> str:
    eq_head = " judge-equivalent (%) [95% CI] |" if judge_eq else ""
    lines = [f"# {title}", "", f"| condition | this run (%) | 95% CI | n questions |{eq_head} paper (%) |",
             "|---|---:|---:|---:|" + ("---:|" if judge_eq else "") + "---:|"]
    for cond, ci in cis.items():
        eq = ""
        if judge_eq:
            e = judge_eq.get(cond)
            eq = f" {_pct(e[0])} [{_pct(e[1])}–{_pct(e[2])}] |" if e else " — |"
        lines.append(
            f"| {CONDITION_LABELS.get(cond, cond)} | {_pct(ci.accuracy)} | {_pct(ci.low)}–{_pct(ci.high)} "
            f"| {ci.n_questions} |{eq} {_pct(paper.get(cond))} |"
        )
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def bar_chart(path: Path, cis: dict[str, AccuracyCI], paper: dict[str, float], title: str) -> None:
    plt = pyplot()

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
    save_figure(fig, ax, title, path)


# -- SEAL, CPT and continual results (stages rl_iter, seal_eval, cpt, continual) ------------------------------
def passage_accuracy(records: list[dict]) -> dict[str, float | None]:
    """Each passage's accuracy over its graded answers (all self-edits and repeats); None if none was graded."""
    ids, groups = per_passage(records)
    out = {}
    for pid, scores in zip(ids, groups):
        graded = [s for s in scores if s is not None]
        out[pid] = sum(graded) / len(graded) if graded else None
    return out


def paired_tests(records: list[dict], others: dict[str, list[dict]], resamples: int, seed: int) -> dict:
    """`records`' condition against each of `others`, paired by passage (stats.paired_test)."""
    from seal_repro.stats import paired_test

    a = passage_accuracy(records)
    out = {}
    for cond, recs in others.items():
        b = passage_accuracy(recs)
        ids = [pid for pid in a if pid in b]
        if ids:
            out[cond] = paired_test([a[i] for i in ids], [b[i] for i in ids], resamples, seed)
    return out


def paired_metrics(name: str, tests: dict) -> dict[str, float]:
    out = {}
    for cond, t in tests.items():
        out[f"{name}.p_vs_{cond}"] = round(t.p_value, 6)
        out[f"{name}.diff_vs_{cond}"] = round(t.diff, 6)
        out[f"{name}.diff_vs_{cond}_low"] = round(t.low, 6)
        out[f"{name}.diff_vs_{cond}_high"] = round(t.high, 6)
    return out


def paired_markdown(label: str, tests: dict, n_passages: int) -> list[str]:
    lines = [f"## {label} vs each baseline (paired over {n_passages} passages)", "",
             "| baseline | difference (points) | 95% CI | p (sign-flip) |", "|---|---:|---:|---:|"]
    for cond, t in tests.items():
        lines.append(f"| {CONDITION_LABELS.get(cond, cond)} | {100 * t.diff:+.1f} | {100 * t.low:+.1f} to "
                     f"{100 * t.high:+.1f} | {t.p_value:.3g} |")
    verdicts = [f"{CONDITION_LABELS.get(c, c)} ({'better' if t.diff > 0 else 'worse'}, p = {t.p_value:.3g})"
                for c, t in tests.items() if t.p_value < 0.05]
    lines += ["", f"- significant at 5%: {'; '.join(verdicts)}" if verdicts else
              "- no difference is significant at 5% (two-sided sign-flip test over passages)", ""]
    return lines


RL_METRICS = ("mean_reward", "mean_accuracy", "mean_baseline", "share_beating_baseline", "mean_self_edit_tokens",
              "sampled", "kept")


def rl_metrics(iterations: dict[int, dict]) -> dict[str, float]:
    out = {}
    for k, summary in iterations.items():
        for name in RL_METRICS:
            value = summary["metrics"].get(name)
            if value is not None and value == value:  # NaN (nothing graded) is left out, not written as NaN
                out[f"rl.iter{k}.{name}"] = round(value, 6) if isinstance(value, float) else value
        if summary.get("sft"):
            out[f"rl.iter{k}.sft_final_loss"] = round(summary["sft"]["final_loss"], 6)
    return out


def rl_markdown(iterations: dict[int, dict], curve: dict[int, AccuracyCI], paper_curve: dict[int, float]) -> list[str]:
    lines = ["## SEAL: ReST-EM iterations", "",
             "| iteration | eval accuracy (%) | 95% CI | paper (%) | train reward | beat baseline | kept / sampled "
             "| self-edit tokens |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in sorted(curve):
        ci, m = curve[k], iterations.get(k, {}).get("metrics")
        train = (f"{m['mean_reward']:.3f} | {100 * m['share_beating_baseline']:.0f}% | {m['kept']} / {m['sampled']} "
                 f"| {m['mean_self_edit_tokens']:.0f}") if m else "— | — | — | —"
        lines.append(f"| {k} | {_pct(ci.accuracy)} | {_pct(ci.low)}–{_pct(ci.high)} | {_pct(paper_curve.get(k))} "
                     f"| {train} |")
    lines += ["", "- iteration 0 is the base model's own self-edits (base_synthetic); iteration i's self-edits and "
              "inner loop use the policy after i ReST-EM iterations; training metrics are on the RL training "
              "passages, of the self-edits sampled *during* iteration i (by the policy of iteration i-1).", ""]
    return lines


def iteration_curve(path: Path, curve: dict[int, AccuracyCI], paper_curve: dict[int, float], title: str) -> None:
    plt = pyplot()

    ks = sorted(curve)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    acc = [100 * curve[k].accuracy for k in ks]
    err = [[100 * (curve[k].accuracy - curve[k].low) for k in ks], [100 * (curve[k].high - curve[k].accuracy) for k in ks]]
    ax.errorbar(ks, acc, yerr=err, marker="o", capsize=4, label="this run (95% CI)")
    pk = sorted(paper_curve)
    ax.plot(pk, [100 * paper_curve[k] for k in pk], marker="s", linestyle="--", alpha=0.6, label="paper (Qwen2.5-7B)")
    ax.set_xticks(sorted(set(ks) | set(pk)))
    ax.set_xlabel("ReST-EM iteration (0 = base model's self-edits)")
    ax.set_ylabel("accuracy (%)")
    save_figure(fig, ax, title, path)


def cpt_markdown(cis: dict[str, AccuracyCI], paper: dict[str, float], summary: dict) -> list[str]:
    title = f"Continued pretraining — {summary['n_passages']} passages at once, {summary['protocol_version']}"
    note = (f"one model per condition, trained on the corpus of all {summary['n_passages']} passages, then asked all "
            f"their questions; paper column: Qwen2.5-7B, n = 200, {summary['protocol_version']}")
    return ["#" + markdown_table(title, cis, paper, [note])]  # "## …": a section of the page


def continual_metrics(summary: dict) -> dict[str, float]:
    out = {}
    for name in ("mean_forgetting", "mean_just_learned", "final_mean_accuracy", "initial_mean_accuracy"):
        if summary.get(name) is not None:
            out[f"continual.{name}"] = summary[name]
    for age, value in summary.get("forgetting_by_age", {}).items():
        if value is not None:
            out[f"continual.forgetting_after_{age}_edits"] = value
    return out


def continual_markdown(summary: dict) -> list[str]:
    m = summary["matrix"]
    k = len(m[0])
    head = "| after edit | " + " | ".join(f"passage {j + 1}" for j in range(k)) + " |"
    lines = [f"## Continual self-edits — retention matrix (accuracy %, mean of {summary['sequences']} "
             f"sequence(s), start: {summary['start']})", "", head, "|---:|" + "---:|" * k]
    for r, row in enumerate(m):
        lines.append(f"| {r if r else 'none'} | " + " | ".join("·" if x is None else f"{100 * x:.0f}" for x in row) + " |")
    mf = summary.get("mean_forgetting")
    lines += ["", f"- mean forgetting after the last edit (accuracy just after learning a passage minus after all "
              f"{k} edits, over passages 1..{k - 1}): {'—' if mf is None else f'{100 * mf:+.1f} points'}", ""]
    return lines


def retention_heatmap(path: Path, matrix: list[list[float | None]], title: str) -> None:
    plt = pyplot()
    import numpy as np

    m = np.array([[np.nan if x is None else 100 * x for x in row] for row in matrix], dtype=float)
    k = m.shape[1]
    fig, ax = plt.subplots(figsize=(max(0.6 * k + 2.5, 5.0), 0.5 * (k + 1) + 2.0))
    im = ax.imshow(np.ma.masked_invalid(m), cmap="viridis", vmin=0, vmax=100, aspect="auto")
    for r in range(m.shape[0]):
        for j in range(k):
            if not np.isnan(m[r, j]):
                ax.text(j, r, f"{m[r, j]:.0f}", ha="center", va="center", fontsize=7,
                        color="white" if m[r, j] < 50 else "black")
    ax.set_xticks(range(k), [str(j + 1) for j in range(k)])
    ax.set_yticks(range(k + 1), ["none"] + [str(r) for r in range(1, k + 1)])
    ax.set_xlabel("passage (in editing order)")
    ax.set_ylabel("after edit")
    fig.colorbar(im, ax=ax, label="accuracy (%)")
    save_figure(fig, ax, title, path)


def forgetting_figure(path: Path, summary: dict, title: str) -> None:
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for key, label in (("forgetting_by_age", "by edits since the passage was learned"),
                       ("forgetting_by_step", "after edit t, over all earlier passages")):
        pts = sorted((int(x), 100 * y) for x, y in summary.get(key, {}).items() if y is not None)
        if pts:
            ax.plot([x for x, _ in pts], [y for _, y in pts], marker="o", label=label)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("edits (since learned / total)")
    ax.set_ylabel("mean accuracy drop (points)")
    save_figure(fig, ax, title, path)
