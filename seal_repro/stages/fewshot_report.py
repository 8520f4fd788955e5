"""Stage fewshot_report: the few-shot ARC results — metrics.json (flat), table.md beside the paper,
success.png, records.jsonl (one row per (condition, task, self-edit)), provenance.json.

Success rate = the share of (task, self-edit) pairs whose adapted model solves the task (every test
output right within `evaluation.n_attempts` voted guesses); an invalid self-edit counts as a failure.
The 95% CI is a bootstrap over tasks (a task's self-edits are not independent of each other).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from seal_repro import paper, provenance
from seal_repro.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from seal_repro.paper import CONDITION_LABELS
from seal_repro.report import pyplot, save_figure
from seal_repro.spec import spec_hash
from seal_repro.stages._common import load_resolved, stage_main
from seal_repro.stats import AccuracyCI, accuracy_ci


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--conditions", required=True, help="folder with one sub-folder per condition (fewshot_eval)")
    p.add_argument("--rl", required=True, help="folder written by fewshot_rl")
    p.add_argument("--out", required=True, help="results folder")


def success_ci(records: list[dict], resamples: int, seed: int) -> AccuracyCI:
    """Pooled over (task, self-edit) pairs, resampling whole tasks."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        groups[r["task_id"]].append(float(r["solved"]))
    return accuracy_ci(list(groups.values()), "micro", resamples, seed)


def _finite(metrics: dict) -> dict:
    # NaN is not JSON and `dvc metrics` chokes on it: a rate with no pairs behind it is left out.
    return {k: v for k, v in metrics.items() if v is not None and v == v}


def condition_metrics(cond: str, records: list[dict], ci: AccuracyCI) -> dict:
    return _finite({
        f"{cond}.success_rate": round(ci.accuracy, 6), f"{cond}.ci_low": round(ci.low, 6),
        f"{cond}.ci_high": round(ci.high, 6), f"{cond}.n_pairs": ci.n_questions, f"{cond}.n_tasks": ci.n_passages,
        f"{cond}.n_solved": sum(bool(r["solved"]) for r in records),
        f"{cond}.n_invalid": sum(not r["valid"] for r in records),
    })


def _pct(x: float | None) -> str:
    return "—" if x is None or x != x else f"{100 * x:.1f}"


def markdown_table(cis: dict[str, AccuracyCI], metrics: dict, notes: list[str]) -> str:
    lines = ["# Few-shot ARC — success rate over (task, self-edit) pairs", "",
             "| condition | this run (%) | 95% CI | solved / pairs | invalid self-edits | paper (%) |",
             "|---|---:|---:|---:|---:|---:|"]
    for cond, ci in cis.items():
        lines.append(
            f"| {CONDITION_LABELS.get(cond, cond)} | {_pct(ci.accuracy)} | {_pct(ci.low)}–{_pct(ci.high)} "
            f"| {metrics[f'{cond}.n_solved']} / {ci.n_questions} | {metrics[f'{cond}.n_invalid']} "
            f"| {_pct(paper.FEWSHOT_ARC.get(cond))} |"
        )
    return "\n".join(lines + [""] + [f"- {n}" for n in notes]) + "\n"


def bar_chart(path: Path, cis: dict[str, AccuracyCI], title: str) -> None:
    plt = pyplot()

    conds = list(cis)
    x = list(range(len(conds)))
    val = [100 * cis[c].accuracy if cis[c].accuracy == cis[c].accuracy else 0.0 for c in conds]
    err = [[max(0.0, v - 100 * (cis[c].low if cis[c].low == cis[c].low else 0)) for v, c in zip(val, conds)],
           [max(0.0, 100 * (cis[c].high if cis[c].high == cis[c].high else 0) - v) for v, c in zip(val, conds)]]
    fig, ax = plt.subplots(figsize=(1.8 * len(conds) + 2, 4))
    ax.bar([i - 0.2 for i in x], val, width=0.4, yerr=err, capsize=4, label="this run (95% CI)")
    ax.bar([i + 0.2 for i in x], [100 * paper.FEWSHOT_ARC.get(c, 0) for c in conds], width=0.4, alpha=0.5,
           label="paper (Llama-3.2-1B)")
    ax.set_xticks(x, [CONDITION_LABELS.get(c, c).replace(" + ", "\n+ ") for c in conds], fontsize=8)
    ax.set_ylabel("success rate (%)")
    ax.set_ylim(0, 105)
    save_figure(fig, ax, title, path)


def rl_metrics(summary: dict) -> dict:
    if summary.get("skipped"):
        return {}
    last = summary["iterations"][-1] if summary["iterations"] else {}
    rate = summary.get("train_success_rate")
    return _finite({
        "rl.train_success_rate": round(rate, 6) if rate is not None else None,
        "rl.rewarded": sum(it["rewarded"] for it in summary["iterations"]),
        "rl.sampled": sum(it["sampled"] for it in summary["iterations"]),
        "rl.valid": sum(it["valid"] for it in summary["iterations"]),
        "rl.policy_trained": int(bool(summary["policy_trained"])),
        "rl.iterations": len(summary["iterations"]),
        "rl.last_rewarded": last.get("rewarded", 0),
    })


def run(args):
    spec = load_resolved(args.spec_dir)
    cond_dir, out = Path(args.conditions), Path(args.out)
    cis, records, summaries, metrics = {}, [], {}, {}
    for cond in spec.conditions:
        summaries[cond] = read_json(cond_dir / cond / "summary.json")
        recs = read_jsonl(cond_dir / cond / "records.jsonl")
        records += [{k: v for k, v in r.items() if k != "responses"} for r in recs]
        cis[cond] = success_ci(recs, spec.evaluation.bootstrap_resamples, spec.seed)
        metrics.update(condition_metrics(cond, recs, cis[cond]))
    rl_summary = read_json(Path(args.rl) / "summary.json")
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
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "table.md", markdown_table(cis, metrics, notes))
    bar_chart(out / "success.png", cis, f"Few-shot ARC ({spec.model.name})")
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "provenance.json", provenance.collect(spec, h, {"conditions": summaries, "rl": rl_summary}))
    print((out / "table.md").read_text())


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
