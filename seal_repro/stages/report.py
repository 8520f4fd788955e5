"""Stage report: the knowledge results — metrics.json (flat), table.md beside the paper, a PNG, records."""

from __future__ import annotations

import shutil
from pathlib import Path

from seal_repro import paper, provenance
from seal_repro.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from seal_repro.calibration import load_calibration
from seal_repro.errors import UserError
from seal_repro.report import bar_chart, condition_ci, flat_metrics, judge_equivalents, markdown_table
from seal_repro.spec import spec_hash
from seal_repro.stages._common import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--conditions", required=True, help="folder holding one sub-folder per condition (adapt_eval outputs)")
    p.add_argument("--calibration", default=None,
                   help="grader calibration JSON (seal-repro calibrate-grader) for the judge-equivalent column")
    p.add_argument("--out", required=True, help="results folder (metrics.json, table.md, accuracy.png, records.jsonl)")
    p.add_argument("--rl", default=None, help="folder holding iter<i>/summary.json (stage rl_iter), for the SEAL rows")
    p.add_argument("--cpt", default=None, help="folder written by the cpt stage")
    p.add_argument("--continual", default=None, help="folder written by the continual stage")


def run(args):
    spec = load_resolved(args.spec_dir)
    cond_dir, out = Path(args.conditions), Path(args.out)
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
    missing = [f"--{name}" for name, section in (("rl", spec.rl), ("cpt", spec.cpt), ("continual", spec.continual))
               if section is not None and getattr(args, name) is None]
    if missing:
        raise UserError(f"the spec has {', '.join(m[2:] for m in missing)} section(s): give {' '.join(missing)}")
    if spec.rl is not None:
        seal_cis, m, md, recs = _seal(spec, cond_dir, Path(args.rl), by_cond, figures)
        cis.update(seal_cis)
        extra_metrics.update(m)
        sections += md
        records += recs
        summaries["seal"] = {"iterations": spec.rl.iterations}
    if spec.cpt is not None:
        m, md, recs = _cpt(spec, Path(args.cpt), figures)
        extra_metrics.update(m)
        sections += md
        records += recs
    if spec.continual is not None:
        m, md = _continual(spec, Path(args.continual), figures)
        extra_metrics.update(m)
        sections += md
    calibration = load_calibration(args.calibration) if args.calibration else None
    judge_eq = judge_equivalents(cis, calibration, spec.evaluation.grader.kind, spec.seed)
    metrics = flat_metrics(cis, judge_eq=judge_eq)
    metrics.update(extra_metrics)
    h = spec_hash(spec)
    notes = [
        f"model: {spec.model.name}; data: {spec.data.kind}; grader: {spec.evaluation.grader.kind}; "
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
            "the self-edits and is the model the inner loop adapts; paired tests below."
        )
    if judge_eq:
        notes.append(
            f"judge-equivalent: the {spec.evaluation.grader.kind} grader's accuracy corrected into the accuracy GPT-4.1 "
            f"would give, with the confusion matrix measured against GPT-4.1 verdicts on held-out SQuAD answers "
            f"({args.calibration}); it assumes the grader errs at the same rates here as there."
        )
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "table.md", markdown_table("Knowledge incorporation — single passage", cis,
                                                       paper.KNOWLEDGE_SINGLE_PASSAGE, notes, judge_eq)
                      + "".join(f"\n{line}" if line else "\n" for line in sections))
    bar_chart(out / "accuracy.png", cis, paper.KNOWLEDGE_SINGLE_PASSAGE, f"Knowledge incorporation ({spec.model.name})")
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "provenance.json", provenance.collect(spec, h, {
        "conditions": summaries, "grader": spec.evaluation.grader.model_dump(mode="json"),
        "calibration": {"path": args.calibration,
                        "entry": (calibration or {}).get("graders", {}).get(spec.evaluation.grader.kind)},
    }))
    print((out / "table.md").read_text())


def _seal(spec, cond_dir: Path, rl_dir: Path, baselines: dict[str, list[dict]], figures: Path):
    """The SEAL row (iteration N), every iteration for the curve, paired tests against each baseline."""
    from seal_repro import report as R

    n, ev = spec.rl.iterations, spec.evaluation
    iter_records = {k: read_jsonl(cond_dir / f"seal_iter{k}" / "records.jsonl") for k in range(1, n + 1)}
    iter_cis = {k: condition_ci(recs, ev, spec.seed) for k, recs in iter_records.items()}
    curve = dict(iter_cis)
    if "base_synthetic" in baselines:  # iteration 0: the base model's own self-edits, same sampling seeds
        curve[0] = condition_ci(baselines["base_synthetic"], ev, spec.seed)
    summaries = {k: read_json(rl_dir / f"iter{k}" / "summary.json") for k in range(1, n + 1)}
    tests = R.paired_tests(iter_records[n], baselines, ev.bootstrap_resamples, spec.seed)
    metrics = R.flat_metrics({f"seal_iter{k}": ci for k, ci in iter_cis.items()})
    metrics.update(R.paired_metrics("seal", tests))
    metrics.update(R.rl_metrics(summaries))
    R.iteration_curve(figures / "seal_iterations.png", curve, paper.KNOWLEDGE_SEAL_ITERATIONS,
                      f"SEAL accuracy by ReST-EM iteration ({spec.model.name})")
    md = R.paired_markdown("SEAL", tests, len(R.passage_accuracy(iter_records[n]))) \
        + R.rl_markdown(summaries, curve, paper.KNOWLEDGE_SEAL_ITERATIONS)
    records = [{**r, "condition": "seal"} for r in iter_records[n]]
    records += [r for k in range(1, n) for r in iter_records[k]]
    return {"seal": iter_cis[n]}, metrics, md, records


def _cpt(spec, cpt_dir: Path, figures: Path):
    from seal_repro import report as R

    summary = read_json(cpt_dir / "summary.json")
    recs = read_jsonl(cpt_dir / "records.jsonl")
    by_cond: dict[str, list[dict]] = {}
    for r in recs:
        by_cond.setdefault(r["condition"], []).append(r)
    cis = {c: condition_ci(by_cond.get(c, []), spec.evaluation, spec.seed) for c in spec.cpt.conditions}
    ref = paper.KNOWLEDGE_CPT_LORA if spec.cpt.method == "lora" else paper.KNOWLEDGE_CPT_FULL
    R.bar_chart(figures / "cpt.png", cis, ref, f"CPT, {summary['n_passages']} passages, {summary['protocol_version']}")
    metrics = R.flat_metrics(cis, prefix="cpt.")
    metrics["cpt.n_passages"] = summary["n_passages"]
    md = R.cpt_markdown(cis, ref, summary)
    if "seal" in by_cond:
        others = {c: rs for c, rs in by_cond.items() if c != "seal"}
        tests = R.paired_tests(by_cond["seal"], others, spec.evaluation.bootstrap_resamples, spec.seed)
        metrics.update(R.paired_metrics("cpt.seal", tests))
        md += R.paired_markdown("CPT: SEAL", tests, summary["n_passages"])
    return metrics, md, [{**r, "condition": f"cpt_{r['condition']}"} for r in recs]


def _continual(spec, continual_dir: Path, figures: Path):
    from seal_repro import report as R

    summary = read_json(continual_dir / "summary.json")
    R.retention_heatmap(figures / "continual_retention.png", summary["matrix"],
                        f"Continual self-edits: accuracy after each edit\n({spec.model.name})")
    R.forgetting_figure(figures / "continual_forgetting.png", summary, "Forgetting of earlier passages")
    return R.continual_metrics(summary), R.continual_markdown(summary)


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
