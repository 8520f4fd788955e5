"""The fewshot stages end to end on the tiny Llama (in-process, in a temporary folder), and the report's
aggregation on hand-made records."""

from __future__ import annotations

import json
import math
from argparse import Namespace

import pytest
import yaml

from seal_repro.io import read_json, read_jsonl
from seal_repro.report.fewshot import condition_metrics, success_ci
from seal_repro.stages.fewshot import baselines, report, rl, tasks
from seal_repro.stages.shared import resolve_spec
from test_provenance import assert_provenance

CONDITIONS = ("icl", "ttt_no_rl", "seal", "oracle_ttt")


def test_pipeline_writes_the_table(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEAL_REPRO_THREADS", "1")
    doc = tiny_spec.model_dump(mode="json")
    doc["evaluation"]["vote_families"] = []  # identity only: keeps the test to seconds
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fewshot": doc}))
    spec, model, build = "build/fewshot/spec", tiny_spec.model.path, "build/fewshot"
    resolve_spec.run(Namespace(params="params.yaml", section="fewshot", out=spec))
    tasks.run(Namespace(spec_dir=spec, out=f"{build}/tasks"))
    baselines.run(Namespace(spec_dir=spec, model=model, tasks=f"{build}/tasks", out=f"{build}/baselines",
                            no_memo=False))
    rl.run(Namespace(spec_dir=spec, model=model, tasks=f"{build}/tasks", out=f"{build}/rl", no_memo=False))
    report.run(Namespace(spec_dir=spec, baselines=f"{build}/baselines", rl=f"{build}/rl", out="results"))

    assert [t["id"] for t in read_jsonl(f"{build}/tasks/train.jsonl")] == ["25ff71a9"]
    assert [t["id"] for t in read_jsonl(f"{build}/tasks/eval.jsonl")] == ["66e6c45b"]
    n_tests = sum(len(t["test"]) for role in ("train", "eval") for t in read_jsonl(f"{build}/tasks/{role}.jsonl"))
    prompts = read_jsonl(f"{build}/tasks/prompts.jsonl")
    assert len(prompts) == n_tests and {p["transform"] for p in prompts} == {"identity"}  # one per test input
    base_edits = read_jsonl(f"{build}/baselines/self_edits.jsonl")
    assert len(base_edits) == 2 and {"tokens", "truncated"} <= set(base_edits[0])
    for cond in ("icl", "ttt_no_rl", "oracle_ttt"):  # every baseline condition in its own folder
        assert read_json(f"{build}/baselines/{cond}/summary.json")["condition"] == cond
    rl_summary = read_json(f"{build}/rl/summary.json")
    assert rl_summary["iterations"][0]["sampled"] == 2 and (tmp_path / build / "rl/policy/adapter_config.json").exists()
    assert len(read_jsonl(f"{build}/rl/records.jsonl")) == 2
    assert read_json(f"{build}/rl/seal/summary.json")["condition"] == "seal"
    if not rl_summary["policy_trained"]:  # an untrained policy is the base model: its samples are the base's
        assert rl_summary["eval_self_edits"].startswith("the base model")
        assert read_jsonl(f"{build}/rl/self_edits.jsonl") == base_edits
    metrics = read_json("results/metrics.json")
    for cond in CONDITIONS:
        assert 0.0 <= metrics[f"{cond}.success_rate"] <= 1.0 and metrics[f"{cond}.n_tasks"] == 1
    assert metrics["ttt_no_rl.n_pairs"] == 2 and metrics["oracle_ttt.n_pairs"] == 1 and "rl.sampled" in metrics
    oracle = read_jsonl(f"{build}/baselines/oracle_ttt/records.jsonl")[0]
    assert oracle["train"]["steps"] >= 1 and oracle["self_edit"] == json.loads(tiny_spec.oracle.to_json())
    table = (tmp_path / "results/table.md").read_text()
    assert "| Oracle TTT |" in table and "| 100.0 |" in table  # the paper column
    assert (tmp_path / "results/success.png").stat().st_size > 0
    assert len(read_jsonl("results/records.jsonl")) == sum(metrics[f"{c}.n_pairs"] for c in CONDITIONS)
    assert all("responses" not in r for r in read_jsonl("results/records.jsonl"))
    assert read_json("results/provenance.json")["spec"]["domain"] == "fewshot"
    assert_provenance(read_json("results/provenance.json"), spec)


def test_rl_stage_without_seal_leaves_a_marker(tiny_spec, tmp_path, monkeypatch):
    from seal_repro import models

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(models, "load", lambda *a, **k: pytest.fail("no model is needed to skip"))
    doc = tiny_spec.model_dump(mode="json")
    doc["conditions"] = ["icl", "oracle_ttt"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fewshot": doc}))
    resolve_spec.run(Namespace(params="params.yaml", section="fewshot", out="spec"))
    rl.run(Namespace(spec_dir="spec", model="m", tasks="tasks", out="rl", no_memo=False))
    assert read_json("rl/summary.json") == {"skipped": True}
    assert read_jsonl("rl/records.jsonl") == [] and read_jsonl("rl/self_edits.jsonl") == []


def _rec(task, solved, valid=True):
    return {"task_id": task, "solved": solved, "valid": valid}


def test_success_rate_pools_pairs_and_resamples_tasks():
    recs = [_rec("a", True), _rec("a", False), _rec("a", False, valid=False), _rec("b", True)]
    ci = success_ci(recs, resamples=500, seed=0)
    assert math.isclose(ci.accuracy, 0.5) and (ci.n_questions, ci.n_passages) == (4, 2)
    assert ci.low <= 0.5 <= ci.high and ci.high <= 1.0
    m = condition_metrics("seal", recs, ci)
    assert (m["seal.n_solved"], m["seal.n_invalid"], m["seal.n_pairs"]) == (2, 1, 4)


def test_a_condition_without_pairs_leaves_nan_out_of_the_metrics():
    m = condition_metrics("seal", [], success_ci([], resamples=10, seed=0))
    assert "seal.success_rate" not in m and m["seal.n_pairs"] == 0
    json.dumps(m, allow_nan=False)  # what dvc metrics reads must be strict JSON
