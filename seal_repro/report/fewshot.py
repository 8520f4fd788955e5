"""The few-shot ARC report: metrics.json (flat), table.md beside the paper, success.png, records.jsonl (one row per
(condition, task, self-edit)), provenance.json.

Success rate = the share of (task, self-edit) pairs whose adapted model solves the task (every test output right
within `evaluation.n_attempts` voted guesses); an invalid self-edit counts as a failure. The 95% CI is a bootstrap
over tasks (a task's self-edits are not independent of each other).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from seal_repro import paper, provenance
from seal_repro.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from seal_repro.report.common import bar_chart, finite, label, markdown_table, pct
from seal_repro.spec import spec_hash
from seal_repro.stats import AccuracyCI, accuracy_ci


def success_ci(records: list[dict], resamples: int, seed: int) -> AccuracyCI:
    """Pooled over (task, self-edit) pairs, resampling whole tasks."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        groups[r["task_id"]].append(float(r["solved"]))
    return accuracy_ci(list(groups.values()), "micro", resamples, seed)


def condition_metrics(cond: str, records: list[dict], ci: AccuracyCI) -> dict:
    return finite({
        f"{cond}.success_rate": round(ci.accuracy, 6), f"{cond}.ci_low": round(ci.low, 6),
        f"{cond}.ci_high": round(ci.high, 6), f"{cond}.n_pairs": ci.n_questions, f"{cond}.n_tasks": ci.n_passages,
        f"{cond}.n_solved": sum(bool(r["solved"]) for r in records),
        f"{cond}.n_invalid": sum(not r["valid"] for r in records),
    })


def rl_metrics(summary: dict) -> dict:
    if summary.get("skipped"):
        return {}
    last = summary["iterations"][-1] if summary["iterations"] else {}
    rate = summary.get("train_success_rate")
    return finite({
        "rl.train_success_rate": round(rate, 6) if rate is not None else None,
        "rl.rewarded": sum(it["rewarded"] for it in summary["iterations"]),
        "rl.sampled": sum(it["sampled"] for it in summary["iterations"]),
        "rl.valid": sum(it["valid"] for it in summary["iterations"]),
        "rl.policy_trained": int(bool(summary["policy_trained"])),
        "rl.iterations": len(summary["iterations"]),
        "rl.last_rewarded": last.get("rewarded", 0),
    })


def _condition_dir(cond: str, baselines: Path, rl: Path) -> Path:
    return Path(rl) / "seal" if cond == "seal" else Path(baselines) / cond


def write_report(spec, baselines: Path, rl: Path, out: Path) -> str:
    """Every few-shot result of `spec` into `out`; returns the table (Markdown)."""
    out = Path(out)
    cis, records, summaries, metrics = {}, [], {}, {}
    for cond in spec.conditions:
        folder = _condition_dir(cond, baselines, rl)
        summaries[cond] = read_json(folder / "summary.json")
        recs = read_jsonl(folder / "records.jsonl")
        records += [{k: v for k, v in r.items() if k != "responses"} for r in recs]
        cis[cond] = success_ci(recs, spec.evaluation.bootstrap_resamples, spec.seed)
        metrics.update(condition_metrics(cond, recs, cis[cond]))
    rl_summary = read_json(Path(rl) / "summary.json")
    metrics.update(rl_metrics(rl_summary))
    h = spec_hash(spec)
    rl_note = "RL skipped (seal not in conditions)" if rl_summary.get("skipped") else (
        f"RL (ReST-EM, {metrics['rl.iterations']} iteration(s)): {metrics['rl.rewarded']} of "
        f"{metrics['rl.sampled']} training self-edits rewarded ({metrics['rl.valid']} valid); "
        f"policy trained: {bool(metrics['rl.policy_trained'])}")
    notes = [
        f"model: {spec.model.name}; {len({r['task_id'] for r in records})} evaluation tasks; "
        f"{spec.self_edit.n_eval} self-edits per task (ttt_no_rl, seal), "
        f"{spec.self_edit.n_train} per training task (RL); "
        f"{spec.evaluation.n_attempts} voted attempts per test output "
        f"(voting transforms: identity{''.join(' + ' + f for f in spec.evaluation.vote_families)})",
        "95% CI: bootstrap over tasks "
        f"({spec.evaluation.bootstrap_resamples} resamples); invalid self-edits count as failures",
        rl_note,
        "paper: Llama-3.2-1B-Instruct on 10 filtered ARC-AGI-1 evaluation tasks (arXiv 2506.10943); "
        "compare the ordering of conditions, not the levels, when the model or tasks differ.",
        f"spec hash {h[:12]}; protocol: {spec.protocol or 'n/a'}",
    ]
    rows = [[label(c), pct(ci.accuracy), f"{pct(ci.low)}–{pct(ci.high)}",
             f"{metrics[f'{c}.n_solved']} / {ci.n_questions}", str(metrics[f"{c}.n_invalid"]),
             pct(paper.FEWSHOT_ARC.get(c))] for c, ci in cis.items()]
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "table.md", markdown_table(
        "Few-shot ARC — success rate over (task, self-edit) pairs",
        ["condition", "this run (%)", "95% CI", "solved / pairs", "invalid self-edits", "paper (%)"], rows, notes))
    bar_chart(out / "success.png", cis, paper.FEWSHOT_ARC, f"Few-shot ARC ({spec.model.name})",
              ylabel="success rate (%)", paper_label="paper (Llama-3.2-1B)", ylim=(0, 105))
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "provenance.json", provenance.collect(spec, h, {"conditions": summaries, "rl": rl_summary}))
    return (out / "table.md").read_text()
