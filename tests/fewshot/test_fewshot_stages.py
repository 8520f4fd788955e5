"""The fewshot stages end to end on the tiny Llama (in-process, in a temporary folder), and the report's
aggregation on hand-made records."""

from __future__ import annotations

import json
import math
from argparse import Namespace

import yaml

from seal_repro.io import read_json, read_jsonl
from seal_repro.stages import (
    fewshot_eval,
    fewshot_report,
    fewshot_rl,
    fewshot_self_edits,
    fewshot_tasks,
    resolve_spec,
)
from seal_repro.stages.fewshot_report import condition_metrics, success_ci
from test_provenance import assert_provenance

CONDITIONS = ("icl", "ttt_no_rl", "seal", "oracle_ttt")


def test_pipeline_writes_the_table(tiny_spec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SEAL_REPRO_THREADS", "1")
    doc = tiny_spec.model_dump(mode="json")
    doc["evaluation"]["vote_families"] = []  # identity only: keeps the test to seconds
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"fewshot": doc}))
    spec, model = "build/spec", tiny_spec.model.path
    resolve_spec.run(Namespace(params="params.yaml", section="fewshot", out=spec))
    fewshot_tasks.run(Namespace(spec_dir=spec, out="build/tasks"))
    fewshot_self_edits.run(Namespace(spec_dir=spec, model=model, tasks="build/tasks", out="build/self_edits"))
    fewshot_rl.run(Namespace(spec_dir=spec, model=model, tasks="build/tasks", base_self_edits="build/self_edits",
                             out="build/rl", no_memo=False))
    edits = {"icl": "build/tasks", "ttt_no_rl": "build/self_edits", "seal": "build/rl", "oracle_ttt": "build/tasks"}
    for cond in CONDITIONS:
        fewshot_eval.run(Namespace(spec_dir=spec, model=model, tasks="build/tasks", self_edits=edits[cond],
                                   condition=cond, out=f"build/conditions/{cond}", no_memo=False))
    fewshot_report.run(Namespace(spec_dir=spec, conditions="build/conditions", rl="build/rl", out="results"))

    assert [t["id"] for t in read_jsonl("build/tasks/train.jsonl")] == ["25ff71a9"]
    assert len(read_jsonl("build/self_edits/self_edits.jsonl")) == 2
    rl = read_json("build/rl/summary.json")
    assert rl["iterations"][0]["sampled"] == 2 and (tmp_path / "build/rl/policy/adapter_config.json").exists()
    if not rl["policy_trained"]:  # an untrained policy is the base model: its samples are the base's
        assert rl["eval_self_edits"].startswith("base model")
        assert read_jsonl("build/rl/self_edits.jsonl") == read_jsonl("build/self_edits/self_edits.jsonl")
    metrics = read_json("results/metrics.json")
    for cond in CONDITIONS:
        assert 0.0 <= metrics[f"{cond}.success_rate"] <= 1.0 and metrics[f"{cond}.n_tasks"] == 1
    assert metrics["ttt_no_rl.n_pairs"] == 2 and metrics["oracle_ttt.n_pairs"] == 1 and "rl.sampled" in metrics
    oracle = read_jsonl("build/conditions/oracle_ttt/records.jsonl")[0]
    assert oracle["train"]["steps"] >= 1 and oracle["self_edit"] == json.loads(tiny_spec.oracle.to_json())
    table = (tmp_path / "results/table.md").read_text()
    assert "| Oracle TTT |" in table and "| 100.0 |" in table  # the paper column
    assert (tmp_path / "results/success.png").stat().st_size > 0
    assert len(read_jsonl("results/records.jsonl")) == sum(metrics[f"{c}.n_pairs"] for c in CONDITIONS)
    assert all("responses" not in r for r in read_jsonl("results/records.jsonl"))
    assert read_json("results/provenance.json")["spec"]["domain"] == "fewshot"
    assert_provenance(read_json("results/provenance.json"), spec)


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
