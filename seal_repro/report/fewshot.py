"""The few-shot ARC report: metrics.json (flat), table.md beside the paper, success.png, records.jsonl (one row per
(condition, task, self-edit)), provenance.json.

Success rate = the share of (task, self-edit) pairs whose adapted model solves the task (every test output right
within `evaluation.n_attempts` voted guesses); an invalid self-edit counts as a failure. The 95% CI is a bootstrap
over tasks (a task's self-edits are not independent of each other).

SEAL against each other condition: the difference of per-task success rates (a task's share of solved pairs),
paired over the evaluation tasks, with a bootstrap CI over tasks and a sign-flip p-value (stats.paired_test).

Which configurations RL moved toward: the share of valid self-edits choosing each option (augmentation family on,
loss on output tokens, learning-rate bucket, epochs) among the RL training samples, the kept (rewarded) ones, the
base model's evaluation self-edits (ttt_no_rl) and the policy's (seal); kept - sampled is what the policy was
fine-tuned toward, seal - ttt_no_rl what it then wrote.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from seal_repro import paper, provenance
from seal_repro.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from seal_repro.report.common import bar_chart, finite, label, markdown_table, pct
from seal_repro.spec import spec_hash
from seal_repro.stats import AccuracyCI, PairedTest, accuracy_ci, paired_test


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


def task_success(records: list[dict]) -> dict[str, float]:
    """Each task's share of solved (task, self-edit) pairs."""
    groups: dict[str, list[float]] = defaultdict(list)
    for r in records:
        groups[r["task_id"]].append(float(r["solved"]))
    return {t: sum(v) / len(v) for t, v in groups.items()}


def paired_vs(records: list[dict], others: dict[str, list[dict]], resamples: int, seed: int
              ) -> dict[str, tuple[PairedTest, int]]:
    """`records`' condition minus each of `others`, per-task success rates paired over the tasks both scored:
    {condition: (test, tasks paired)}."""
    a, out = task_success(records), {}
    for cond, recs in others.items():
        b = task_success(recs)
        ids = [t for t in a if t in b]
        if ids:
            out[cond] = (paired_test([a[t] for t in ids], [b[t] for t in ids], resamples, seed), len(ids))
    return out


def paired_metrics(name: str, tests: dict[str, tuple[PairedTest, int]]) -> dict:
    out = {}
    for cond, (t, n) in tests.items():
        out.update({f"{name}.diff_vs_{cond}": round(t.diff, 6), f"{name}.diff_vs_{cond}_low": round(t.low, 6),
                    f"{name}.diff_vs_{cond}_high": round(t.high, 6), f"{name}.p_vs_{cond}": round(t.p_value, 6),
                    f"{name}.n_tasks_vs_{cond}": n})
    return finite(out)


def paired_markdown(tests: dict[str, tuple[PairedTest, int]]) -> list[str]:
    if not tests:
        return []
    lines = ["", "## SEAL vs each condition (per-task success rates, paired over evaluation tasks)", "",
             "| condition | tasks | SEAL − condition (points) | 95% CI | p (sign-flip) |", "|---|---:|---:|---:|---:|"]
    for cond, (t, n) in tests.items():
        lines.append(f"| {label(cond)} | {n} | {100 * t.diff:+.1f} | {100 * t.low:+.1f} to {100 * t.high:+.1f} | "
                     f"{t.p_value:.3g} |")
    lines += ["", "- CI: bootstrap over tasks; p: two-sided sign-flip test over tasks (exact up to 16 tasks)"]
    return lines


# -- which configurations the self-edits chose, and which way RL moved them -------------------------------------
LR_EDGES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
CHOICE_GROUPS = {"rl_sampled": "RL: sampled", "rl_kept": "RL: kept (rewarded)",
                 "ttt_no_rl": "eval: base model (TTT no RL)", "seal": "eval: policy (SEAL)"}


def lr_bucket(lr: float) -> str:
    """The learning rate's half-open bucket between LR_EDGES, as a metrics-key fragment (`lr_1e-03_3e-03`)."""
    lo = None
    for edge in LR_EDGES:
        if lr < edge:
            return f"lr_lt_{edge:.0e}" if lo is None else f"lr_{lo:.0e}_{edge:.0e}"
        lo = edge
    return f"lr_ge_{LR_EDGES[-1]:.0e}"


def _lr_label(key: str) -> str:
    parts = key.split("_")[1:]
    if parts[0] == "lt":
        return f"learning rate < {parts[1]}"
    if parts[0] == "ge":
        return f"learning rate ≥ {parts[1]}"
    return f"learning rate in [{parts[0]}, {parts[1]})"


def choice_features(edit: dict) -> list[str]:
    """The options one parsed self-edit (a record's `self_edit`) chose, as feature keys."""
    aug, training = edit.get("augmentations") or {}, edit.get("training") or {}
    out = [f"aug_{f}" for f in ("basic", "size", "chain", "repeat") if aug.get(f)]
    if training.get("loss_on") == "output_tokens":
        out.append("loss_output_tokens")
    if training.get("learning_rate") is not None:
        out.append(lr_bucket(float(training["learning_rate"])))
    if training.get("epochs") is not None:
        out.append(f"epochs_{float(training['epochs']):g}")
    return out


def _lr_buckets() -> list[str]:
    """Every learning-rate bucket key, low to high."""
    return [f"lr_lt_{LR_EDGES[0]:.0e}"] + [f"lr_{a:.0e}_{b:.0e}" for a, b in zip(LR_EDGES, LR_EDGES[1:])] \
        + [f"lr_ge_{LR_EDGES[-1]:.0e}"]


def _feature_order(key: str) -> tuple:
    if key.startswith("aug_"):
        return (0, ("basic", "size", "chain", "repeat").index(key[4:]))
    if key.startswith("loss_"):
        return (1, 0)
    if key.startswith("lr_"):
        return (2, _lr_buckets().index(key))
    return (3, float(key.split("_", 1)[1]))


def _feature_label(key: str) -> str:
    if key.startswith("aug_"):
        return f"augmentation {key[4:]}"
    if key == "loss_output_tokens":
        return "loss on output tokens"
    if key.startswith("lr_"):
        return _lr_label(key)
    return f"epochs = {key.split('_', 1)[1]}"


def choice_shares(groups: dict[str, list[dict]]) -> tuple[dict[str, dict[str, float]], dict[str, int]]:
    """({group: {feature: share of the group's valid self-edits choosing it}}, {group: valid self-edits})."""
    shares, counts = {}, {}
    for g, records in groups.items():
        edits = [r["self_edit"] for r in records if r.get("valid") and r.get("self_edit")]
        counts[g] = len(edits)
        tally: dict[str, int] = defaultdict(int)
        for e in edits:
            for f in choice_features(e):
                tally[f] += 1
        shares[g] = {f: n / len(edits) for f, n in tally.items()} if edits else {}
    return shares, counts


def choice_groups(rl_records: list[dict], by_condition: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """The self-edit groups compared: RL samples, the kept ones, and the evaluation conditions that have
    sampled self-edits."""
    groups = {}
    if rl_records:
        groups["rl_sampled"] = rl_records
        groups["rl_kept"] = [r for r in rl_records if r.get("reward")]
    for cond in ("ttt_no_rl", "seal"):
        if cond in by_condition:
            groups[cond] = by_condition[cond]
    return groups


def choice_metrics(shares: dict[str, dict[str, float]], counts: dict[str, int]) -> dict:
    out = {}
    for g, per in shares.items():
        out[f"choice.{g}.n"] = counts[g]
        out.update({f"choice.{g}.{f}": round(v, 6) for f, v in per.items()})
    return out


def choice_markdown(shares: dict[str, dict[str, float]], counts: dict[str, int], rl_records: list[dict]) -> list[str]:
    if not any(counts.values()):
        return []
    feats = sorted({f for per in shares.values() for f in per}, key=_feature_order)
    groups = [g for g in CHOICE_GROUPS if g in shares]
    sampled = defaultdict(int)
    rewarded = defaultdict(int)
    for r in rl_records:
        if r.get("valid") and r.get("self_edit"):
            for f in choice_features(r["self_edit"]):
                sampled[f] += 1
                rewarded[f] += int(bool(r.get("reward")))

    def share(g, f):
        return pct(shares[g].get(f, 0.0)) if counts[g] else "—"

    def diff(a, b, f):
        if not (counts.get(a) and counts.get(b)):
            return "—"
        return f"{100 * (shares[a].get(f, 0.0) - shares[b].get(f, 0.0)):+.1f}"

    header = ["option"] + [f"{CHOICE_GROUPS[g]} (%, n={counts[g]})" for g in groups]
    header += ["kept − sampled (points)", "RL reward rate (%)", "SEAL − no RL (points)"]
    rows = []
    for f in feats:
        rate = pct(rewarded[f] / sampled[f]) if sampled[f] else "—"
        rows.append([_feature_label(f)] + [share(g, f) for g in groups]
                    + [diff("rl_kept", "rl_sampled", f), f"{rate} ({rewarded[f]}/{sampled[f]})" if sampled[f] else "—",
                       diff("seal", "ttt_no_rl", f)])
    lines = ["", "## Self-edit choices: which configurations RL moved toward", "",
             "| " + " | ".join(header) + " |", "|---|" + "---:|" * (len(header) - 1)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += ["", "- share of each group's valid self-edits choosing the option (a self-edit turns on any number of "
              "augmentations); kept − sampled: what the policy was fine-tuned toward; RL reward rate: the share of "
              "the RL samples with the option whose adapter solved its task; SEAL − no RL: how the policy's "
              "evaluation self-edits differ from the base model's"]
    return lines


def _condition_dir(cond: str, baselines: Path, rl: Path) -> Path:
    return Path(rl) / "seal" if cond == "seal" else Path(baselines) / cond


def write_report(spec, baselines: Path, rl: Path, out: Path) -> str:
    """Every few-shot result of `spec` into `out`; returns the table (Markdown)."""
    out = Path(out)
    cis, records, summaries, metrics, by_cond = {}, [], {}, {}, {}
    resamples = spec.evaluation.bootstrap_resamples
    for cond in spec.conditions:
        folder = _condition_dir(cond, baselines, rl)
        summaries[cond] = read_json(folder / "summary.json")
        recs = by_cond[cond] = read_jsonl(folder / "records.jsonl")
        records += [{k: v for k, v in r.items() if k != "responses"} for r in recs]
        cis[cond] = success_ci(recs, resamples, spec.seed)
        metrics.update(condition_metrics(cond, recs, cis[cond]))
    rl_summary = read_json(Path(rl) / "summary.json")
    metrics.update(rl_metrics(rl_summary))
    tests = paired_vs(by_cond["seal"], {c: r for c, r in by_cond.items() if c != "seal"}, resamples, spec.seed) \
        if "seal" in by_cond else {}
    metrics.update(paired_metrics("seal", tests))
    rl_records = [] if rl_summary.get("skipped") or not (Path(rl) / "records.jsonl").exists() else \
        read_jsonl(Path(rl) / "records.jsonl")
    shares, counts = choice_shares(choice_groups(rl_records, by_cond))
    metrics.update(choice_metrics(shares, counts))
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
    table = markdown_table(
        "Few-shot ARC — success rate over (task, self-edit) pairs",
        ["condition", "this run (%)", "95% CI", "solved / pairs", "invalid self-edits", "paper (%)"], rows, notes)
    extra = paired_markdown(tests) + choice_markdown(shares, counts, rl_records)
    atomic_write_text(out / "table.md", table + ("\n".join(extra).lstrip("\n") + "\n" if extra else ""))
    bar_chart(out / "success.png", cis, paper.FEWSHOT_ARC, f"Few-shot ARC ({spec.model.name})",
              ylabel="success rate (%)", paper_label="paper (Llama-3.2-1B)", ylim=(0, 105))
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "provenance.json", provenance.collect(spec, h, {"conditions": summaries, "rl": rl_summary}))
    return (out / "table.md").read_text()
