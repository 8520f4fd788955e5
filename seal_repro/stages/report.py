"""Stage report: the knowledge results — metrics.json (flat), table.md beside the paper, a PNG, records."""

from __future__ import annotations

from pathlib import Path

from seal_repro import paper, provenance
from seal_repro.io import atomic_write_text, read_json, read_jsonl, write_json, write_jsonl
from seal_repro.report import bar_chart, condition_ci, flat_metrics, markdown_table
from seal_repro.spec import spec_hash
from seal_repro.stages._common import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--conditions", required=True, help="folder holding one sub-folder per condition (adapt_eval outputs)")
    p.add_argument("--out", required=True, help="results folder (metrics.json, table.md, accuracy.png, records.jsonl)")


def run(args):
    spec = load_resolved(args.spec_dir)
    cond_dir, out = Path(args.conditions), Path(args.out)
    cis, records, summaries = {}, [], {}
    for cond in spec.conditions:
        summary = read_json(cond_dir / cond / "summary.json")
        summaries[cond] = summary
        recs = read_jsonl(cond_dir / cond / "records.jsonl")
        records += recs
        cis[cond] = condition_ci(recs, spec.evaluation, spec.seed)
    metrics = flat_metrics(cis)
    h = spec_hash(spec)
    notes = [
        f"model: {spec.model.name}; data: {spec.data.kind}; grader: {spec.evaluation.grader.kind}; "
        f"aggregation: {spec.evaluation.aggregation} (95% CI: bootstrap over passages, "
        f"{spec.evaluation.bootstrap_resamples} resamples)",
        "paper: Qwen2.5-7B on SQuAD, GPT-4.1-graded (arXiv 2506.10943); a different model, data and grader, "
        "so compare the ordering of conditions, not the levels.",
        f"spec hash {h[:12]}; protocol: {spec.protocol or 'n/a'}",
    ]
    write_json(out / "metrics.json", metrics)
    atomic_write_text(out / "table.md", markdown_table("Knowledge incorporation — single passage", cis,
                                                       paper.KNOWLEDGE_SINGLE_PASSAGE, notes))
    bar_chart(out / "accuracy.png", cis, paper.KNOWLEDGE_SINGLE_PASSAGE, f"Knowledge incorporation ({spec.model.name})")
    write_jsonl(out / "records.jsonl", records)
    write_json(out / "provenance.json", provenance.collect(spec, h, {"conditions": summaries}))
    print((out / "table.md").read_text())


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
