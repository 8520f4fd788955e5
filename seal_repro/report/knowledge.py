"""The knowledge report: flat metrics JSON, the table beside the paper (single passage, SEAL iterations, paired
tests, CPT, continual), figures, per-question records and provenance, from the knowledge stages' outputs."""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np

from seal_repro import paper, provenance
from seal_repro.calibration import judge_equivalent, load_calibration
from seal_repro.errors import UserError
from seal_repro.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from seal_repro.report.common import bar_chart, label, markdown_table as table, pct as _pct, pyplot, save_figure
from seal_repro.spec import spec_hash
from seal_repro.stats import AccuracyCI, accuracy_ci, paired_test


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


# The calibration measured graders against GPT-4.1's verdicts of Qwen2.5-7B's answers on SQuAD passages: the
# correction holds for SQuAD-like data only (on a 135M model's answers about invented names it is no estimate).
CALIBRATED_DATA = ("seal_json", "squad_json", "hf_squad")


def calibrated_for(data_kind: str) -> bool:
    return data_kind in CALIBRATED_DATA


def judge_equivalents(cis: dict[str, AccuracyCI], calibration: dict | None, grader_kind: str,
                      seed: int, data_kind: str = "seal_json") -> dict[str, tuple[float, float, float]]:
    """GPT-4.1-equivalent accuracy per condition, corrected with the grader's calibration confusion matrix.

    Empty when there is no calibration entry for this grader (e.g. the judge itself, or an f1 threshold
    that was not calibrated) or the data is not of a kind it was measured on (CALIBRATED_DATA); the CI includes
    the calibration counts' uncertainty (see calibration.py).
    """
    entry = (calibration or {}).get("graders", {}).get(grader_kind)
    if entry is None or not calibrated_for(data_kind):
        return {}
    out = {}
    for cond, ci in cis.items():
        try:
            out[cond] = judge_equivalent(ci, entry, n_boot=2000, seed=seed)
        except ValueError:
            continue
    return out


def writer_labels(spec) -> dict[str, str]:
    """Row labels naming both models when a separate model writes the self-edits (teacher–student); {} otherwise."""
    writer = spec.self_edit.writer
    if writer is None:
        return {}
    return {"base_synthetic": f"Train on passage + synthetic (writer {writer.name}, no RL)",
            "seal": f"SEAL (writer {writer.name} RL-trained; student {spec.model.name} adapted)"}


def markdown_table(title: str, cis: dict[str, AccuracyCI], paper_numbers: dict[str, float], notes: list[str],
                   judge_eq: dict[str, tuple[float, float, float]] | None = None,
                   labels: dict[str, str] | None = None) -> str:
    header = ["condition", "this run (%)", "95% CI", "n questions"] + (["judge-equivalent (%) [95% CI]"] if judge_eq
                                                                      else []) + ["paper (%)"]
    rows = []
    for cond, ci in cis.items():
        eq = []
        if judge_eq:
            e = judge_eq.get(cond)
            eq = [f"{_pct(e[0])} [{_pct(e[1])}–{_pct(e[2])}]" if e else "—"]
        rows.append([(labels or {}).get(cond) or label(cond), _pct(ci.accuracy), f"{_pct(ci.low)}–{_pct(ci.high)}", str(ci.n_questions), *eq,
                     _pct(paper_numbers.get(cond))])
    return table(title, header, rows, notes)


# -- SEAL, CPT and continual results (stages rl, cpt, continual) ------------------------------------------------
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
        need = t.passages_for_power()
        if math.isfinite(need):  # passages a paired test at p < 0.05 needs for 80 % power at this effect and SD
            out[f"{name}.passages_for_80pct_power_vs_{cond}"] = int(need)
    return out


def paired_markdown(name: str, tests: dict, n_passages: int) -> list[str]:
    lines = [f"## {name} vs each baseline (paired over {n_passages} passages)", "",
             "| baseline | difference (points) | 95% CI | p (sign-flip) | passages for 80% power |",
             "|---|---:|---:|---:|---:|"]
    for cond, t in tests.items():
        need = t.passages_for_power()
        lines.append(f"| {label(cond)} | {100 * t.diff:+.1f} | {100 * t.low:+.1f} to "
                     f"{100 * t.high:+.1f} | {t.p_value:.3g} | {need if math.isfinite(need) else '—'} |")
    verdicts = [f"{label(c)} ({'better' if t.diff > 0 else 'worse'}, p = {t.p_value:.3g})"
                for c, t in tests.items() if t.p_value < 0.05]
    lines += ["", f"- significant at 5%: {'; '.join(verdicts)}" if verdicts else
              "- no difference is significant at 5% (two-sided sign-flip test over passages)", ""]
    return lines


RL_METRICS = ("mean_reward", "best_of_k_mean_reward", "mean_accuracy", "mean_baseline", "share_beating_baseline",
              "share_kept", "mean_self_edit_tokens", "share_truncated", "sampled", "kept")


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
             "| iteration | eval accuracy (%) | 95% CI | paper (%) | train reward: mean | best of k | beat baseline "
             "| kept / sampled | self-edit tokens | truncated |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for k in sorted(curve):
        ci, m = curve[k], iterations.get(k, {}).get("metrics")
        train = (f"{m['mean_reward']:.3f} | {m['best_of_k_mean_reward']:.3f} | {_pct(m['share_beating_baseline'])}% "
                 f"| {m['kept']} / {m['sampled']} | {m['mean_self_edit_tokens']:.0f} | {_pct(m['share_truncated'])}%"
                 ) if m else "— | — | — | — | — | —"
        lines.append(f"| {k} | {_pct(ci.accuracy)} | {_pct(ci.low)}–{_pct(ci.high)} | {_pct(paper_curve.get(k))} "
                     f"| {train} |")
    lines += ["", "- iteration 0 is the base model's own self-edits (base_synthetic); iteration i's self-edits and "
              "inner loop use the policy after i ReST-EM iterations; training metrics are on the RL training "
              "passages, of the self-edits sampled *during* iteration i (by the policy of iteration i-1): reward "
              "mean, the mean over passages of the best of the k samples, the share beating the unadapted "
              "policy, how many were kept for the SFT, their mean length and the share cut at max_new_tokens.", ""]
    return lines


def _passage_rewards(rows: list[dict]) -> dict[str, float]:
    groups: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        if r["reward"] is not None and r["reward"] == r["reward"]:
            groups[r["passage_id"]].append(r["reward"])
    return {pid: sum(v) / len(v) for pid, v in groups.items()}


def held_in(samples: dict[int, list[dict]], resamples: int, seed: int) -> tuple[dict, list[str]]:
    """Policy i's mean reward on the training passages (i = 0 … N: iteration i+1's samples, the last from the
    held-in check) and, for each policy after the first, the paired difference with the one before it."""
    policies = sorted(samples)
    per = {i: _passage_rewards(samples[i]) for i in policies}
    metrics, lines = {}, ["## SEAL: does each policy write better self-edits for its training passages?", "",
                          "| policy (after iteration) | mean reward on the training passages | vs the policy before "
                          "(points) | 95% CI | p (sign-flip) |", "|---:|---:|---:|---:|---:|"]
    for i in policies:
        mean = sum(per[i].values()) / len(per[i]) if per[i] else float("nan")
        metrics[f"rl.policy{i}.train_reward"] = round(mean, 6)
        cells = "— | — | —"
        if i - 1 in per:
            ids = [pid for pid in per[i] if pid in per[i - 1]]
            t = paired_test([per[i][p] for p in ids], [per[i - 1][p] for p in ids], resamples, seed)
            metrics.update({f"rl.policy{i}.train_reward_diff": round(t.diff, 6),
                            f"rl.policy{i}.train_reward_p": round(t.p_value, 6)})
            cells = f"{100 * t.diff:+.1f} | {100 * t.low:+.1f} to {100 * t.high:+.1f} | {t.p_value:.3g}"
        lines.append(f"| {i} | {mean:.3f} | {cells} |")
    lines += ["", "- policy 0 is the base model; policy i's self-edits are those iteration i+1 sampled (the last row: "
              "the held-in check, sampled after the final iteration and trained on by nothing); rewards as above, "
              "paired over training passages.", ""]
    return metrics, lines


def _excerpt(text: str, chars: int = 220) -> str:
    one = " / ".join(line.strip() for line in text.splitlines() if line.strip())
    return (one[:chars] + " …") if len(one) > chars else one


def examples_markdown(samples: dict[int, list[dict]], n: int = 2) -> list[str]:
    """Per iteration, the best kept self-edits beside the worst rejected ones: what RL selected for."""
    lines = ["## SEAL: what ReST-EM kept and rejected", ""]
    for k in sorted(samples):
        rows = [r for r in samples[k] if r["reward"] == r["reward"]]
        kept = sorted((r for r in rows if r["kept"]), key=lambda r: -r["reward"])[:n]
        rejected = sorted((r for r in rows if not r["kept"]), key=lambda r: r["reward"])[:n]
        lines += [f"Iteration {k}:", ""]
        for label, group in (("kept", kept), ("rejected", rejected)):
            for r in group:
                lines.append(f"- {label} (passage {r['passage_id']}, reward {r['reward']:.2f}, {r['tokens']} tokens"
                             f"{', truncated' if r['truncated'] else ''}): {_excerpt(r['text'])}")
        lines.append("")
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
    for name in ("mean_forgetting", "mean_just_learned"):
        ci = summary.get(f"{name}_ci")
        if ci:
            out[f"continual.{name}_ci_low"], out[f"continual.{name}_ci_high"] = ci
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
    def with_ci(name: str, sign: str) -> str:
        value, ci = summary.get(name), summary.get(f"{name}_ci")
        if value is None:
            return "—"
        text = f"{100 * value:{sign}.1f} points"
        return text + (f" (95% CI {100 * ci[0]:{sign}.1f} to {100 * ci[1]:{sign}.1f})" if ci else "")

    lines += ["", f"- accuracy on a passage just after learning it: {with_ci('mean_just_learned', '')}",
              f"- mean forgetting after the last edit (accuracy just after learning a passage minus after all "
              f"{k} edits, over passages 1..{k - 1}): {with_ci('mean_forgetting', '+')}", ""]
    return lines


def retention_heatmap(path: Path, matrix: list[list[float | None]], title: str) -> None:
    plt = pyplot()
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
    from matplotlib.ticker import MaxNLocator  # with pyplot: matplotlib loads on first use

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


# -- the whole report ---------------------------------------------------------------------------------------------
def round_timing(folders: list[Path]) -> dict:
    """Where a round's time goes, from the stages' own `rounds.jsonl` (each round's training and answering wall
    seconds, as computed, memoized rounds included): the answering share is issue 18's "≤ 20 % of a round"."""
    train = answer = 0.0
    rounds = 0
    for folder in folders:
        for path in sorted(Path(folder).rglob("rounds.jsonl")):
            for r in read_jsonl(path):
                if not (r.get("train") and r.get("answer")):
                    continue  # untrained rounds (base) and records from before answer timing was kept
                rounds += 1
                train += r["train"]["seconds"]
                answer += r["answer"]["seconds"]
    total = train + answer
    return {"rounds": rounds, "train_seconds": round(train, 1), "answer_seconds": round(answer, 1),
            "answer_share": round(answer / total, 4) if total else None}


def write_report(spec, baselines: Path, out: Path, *, rl: Path | None = None, cpt: Path | None = None,
                 continual: Path | None = None, calibration: Path | None = None) -> str:
    """Every knowledge result of `spec` into `out`; returns the table (Markdown). `baselines`, `rl`, `cpt`,
    `continual`: the folders those stages wrote (each needed when the spec has the section)."""
    cond_dir, out = Path(baselines), Path(out)
    calibration_path = calibration
    cis, records, summaries, by_cond = {}, [], {}, {}
    for cond in spec.conditions:
        summary = read_json(cond_dir / cond / "summary.json")
        summaries[cond] = summary
        recs = read_jsonl(cond_dir / cond / "records.jsonl")
        records += recs
        by_cond[cond] = recs
        cis[cond] = condition_ci(recs, spec.evaluation, spec.seed)
    figures = out / "figures"  # only what this spec produced: a figure from an earlier spec would mislead
    if figures.exists():
        shutil.rmtree(figures)
    figures.mkdir(parents=True)
    extra_metrics, sections = {}, []
    given = {"rl": rl, "cpt": cpt, "continual": continual}
    missing = [f"--{name}" for name, section in (("rl", spec.rl), ("cpt", spec.cpt), ("continual", spec.continual))
               if section is not None and given[name] is None]
    if missing:
        raise UserError(f"the spec has {', '.join(m[2:] for m in missing)} section(s): give {' '.join(missing)}")
    if spec.rl is not None:
        seal_cis, m, md, recs = _seal(spec, Path(rl), by_cond, figures)
        cis.update(seal_cis)
        extra_metrics.update(m)
        sections += md
        records += recs
        summaries["seal"] = {"iterations": spec.rl.iterations}
    if spec.cpt is not None:
        m, md, recs = _cpt(spec, Path(cpt), figures)
        extra_metrics.update(m)
        sections += md
        records += recs
    if spec.continual is not None:
        m, md = _continual(spec, Path(continual), figures)
        extra_metrics.update(m)
        sections += md
    calibration = load_calibration(calibration_path) if calibration_path else None
    judge_eq = judge_equivalents(cis, calibration, spec.evaluation.grader.kind, spec.seed, spec.data.kind)
    metrics = flat_metrics(cis, judge_eq=judge_eq)
    metrics.update(extra_metrics)
    h = spec_hash(spec)
    writer = spec.self_edit.writer
    models_note = f"model: {spec.model.name}" if writer is None else \
        f"student (the model every round adapts): {spec.model.name}; self-edit writer: {writer.name}"
    notes = [
        f"{models_note}; data: {spec.data.kind}; grader: {spec.evaluation.grader.kind}; "
        f"aggregation: {spec.evaluation.aggregation} (95% CI: bootstrap over passages, "
        f"{spec.evaluation.bootstrap_resamples} resamples)",
        "paper: Qwen2.5-7B on SQuAD, GPT-4.1-graded (arXiv 2506.10943); a different model, data and grader, "
        "so compare the ordering of conditions, not the levels.",
        f"spec hash {h[:12]}; protocol: {spec.protocol or 'n/a'}",
    ]
    if spec.rl is not None:
        rl = spec.rl
        notes.append(
            f"SEAL: the policy after {rl.iterations} ReST-EM iteration(s) ({rl.train_data.n_passages or 'all'} training "
            f"passages disjoint from these, k = {rl.k} self-edits each, {rl.repeats} repeat(s), keep: {rl.keep}) writes "
            + ("the self-edits and is the model the inner loop adapts; paired tests below." if writer is None else
               "the self-edits: the writer's policy; the inner loop adapts the student from its own weights and its "
               "adapted accuracy is the reward; paired tests below.")
        )
    if writer is not None and "base_synthetic" in spec.conditions:
        notes.append("passage + synthetic (and iteration 0 of the curve): the untrained writer's self-edits.")
    if calibration is not None and not calibrated_for(spec.data.kind):
        notes.append(f"no judge-equivalent column: the grader calibration was measured on SQuAD answers "
                     f"({', '.join(CALIBRATED_DATA)} data), not on {spec.data.kind} data.")
    if judge_eq:
        notes.append(
            f"judge-equivalent: the {spec.evaluation.grader.kind} grader's accuracy corrected into the accuracy GPT-4.1 "
            f"would give, with the confusion matrix measured against GPT-4.1 verdicts on held-out SQuAD answers "
            f"({calibration_path}); it assumes the grader errs at the same rates here as there."
        )
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "table.md", markdown_table("Knowledge incorporation — single passage", cis,
                                                       paper.KNOWLEDGE_SINGLE_PASSAGE, notes, judge_eq,
                                                       writer_labels(spec))
                      + "".join(f"\n{line}" if line else "\n" for line in sections))
    bar_chart(out / "accuracy.png", cis, paper.KNOWLEDGE_SINGLE_PASSAGE, f"Knowledge incorporation ({spec.model.name})")
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "provenance.json", provenance.collect(spec, h, {
        "conditions": summaries, "grader": spec.evaluation.grader.model_dump(mode="json"),
        "models": {"student": spec.model.name,
                   "writer": spec.model.name if writer is None else writer.name, "separate_writer": writer is not None},
        "calibration": {"path": None if calibration_path is None else str(calibration_path),
                        "entry": (calibration or {}).get("graders", {}).get(spec.evaluation.grader.kind)},
        "round_timing": round_timing([cond_dir] + ([Path(given["rl"])] if given["rl"] is not None else [])),
    }))
    return (out / "table.md").read_text()


def _seal(spec, rl_dir: Path, baselines: dict[str, list[dict]], figures: Path):
    """The SEAL row (iteration N), every iteration for the curve, paired tests against each baseline."""
    n, ev = spec.rl.iterations, spec.evaluation
    iter_records = {k: read_jsonl(rl_dir / f"seal_iter{k}" / "records.jsonl") for k in range(1, n + 1)}
    iter_cis = {k: condition_ci(recs, ev, spec.seed) for k, recs in iter_records.items()}
    curve = dict(iter_cis)
    if "base_synthetic" in baselines:  # iteration 0: the base model's own self-edits, same sampling seeds
        curve[0] = condition_ci(baselines["base_synthetic"], ev, spec.seed)
    summaries = {k: read_json(rl_dir / f"iter{k}" / "summary.json") for k in range(1, n + 1)}
    tests = paired_tests(iter_records[n], baselines, ev.bootstrap_resamples, spec.seed)
    metrics = flat_metrics({f"seal_iter{k}": ci for k, ci in iter_cis.items()})
    metrics.update(paired_metrics("seal", tests))
    metrics.update(rl_metrics(summaries))
    iteration_curve(figures / "seal_iterations.png", curve, paper.KNOWLEDGE_SEAL_ITERATIONS,
                      f"SEAL accuracy by ReST-EM iteration ({spec.model.name})")
    md = paired_markdown("SEAL", tests, len(passage_accuracy(iter_records[n]))) \
        + rl_markdown(summaries, curve, paper.KNOWLEDGE_SEAL_ITERATIONS)
    samples = {k: read_jsonl(rl_dir / f"iter{k}" / "samples.jsonl") for k in range(1, n + 1)}
    by_policy = {k - 1: rows for k, rows in samples.items()}
    if (rl_dir / "held_in" / "samples.jsonl").exists():
        by_policy[n] = read_jsonl(rl_dir / "held_in" / "samples.jsonl")
    m, lines = held_in(by_policy, ev.bootstrap_resamples, spec.seed)
    metrics.update(m)
    md += lines + examples_markdown(samples)
    records = [{**r, "condition": "seal"} for r in iter_records[n]]
    records += [r for k in range(1, n) for r in iter_records[k]]
    return {"seal": iter_cis[n]}, metrics, md, records


def _cpt(spec, cpt_dir: Path, figures: Path):
    summary = read_json(cpt_dir / "summary.json")
    recs = read_jsonl(cpt_dir / "records.jsonl")
    by_cond: dict[str, list[dict]] = {}
    for r in recs:
        by_cond.setdefault(r["condition"], []).append(r)
    cis = {c: condition_ci(by_cond.get(c, []), spec.evaluation, spec.seed) for c in spec.cpt.conditions}
    ref = paper.KNOWLEDGE_CPT_LORA if spec.cpt.method == "lora" else paper.KNOWLEDGE_CPT_FULL
    bar_chart(figures / "cpt.png", cis, ref, f"CPT, {summary['n_passages']} passages, {summary['protocol_version']}")
    metrics = flat_metrics(cis, prefix="cpt.")
    metrics["cpt.n_passages"] = summary["n_passages"]
    md = cpt_markdown(cis, ref, summary)
    if "seal" in by_cond:
        others = {c: rs for c, rs in by_cond.items() if c != "seal"}
        tests = paired_tests(by_cond["seal"], others, spec.evaluation.bootstrap_resamples, spec.seed)
        metrics.update(paired_metrics("cpt.seal", tests))
        md += paired_markdown("CPT: SEAL", tests, summary["n_passages"])
    return metrics, md, [{**r, "condition": f"cpt_{r['condition']}"} for r in recs]


def _continual(spec, continual_dir: Path, figures: Path):
    summary = read_json(continual_dir / "summary.json")
    retention_heatmap(figures / "continual_retention.png", summary["matrix"],
                        f"Continual self-edits: accuracy after each edit\n({spec.model.name})")
    forgetting_figure(figures / "continual_forgetting.png", summary, "Forgetting of earlier passages")
    return continual_metrics(summary), continual_markdown(summary)
