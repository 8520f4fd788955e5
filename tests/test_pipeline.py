"""End to end on the tiny model: the stages in-process, then the real dvc.yaml under `dvc repro`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO

TINY_SPEC = """\
domain: knowledge
seed: 3
model: {{source: local, path: {model}, chat_template: false}}
data: {{kind: fictional, n_passages: 3, questions_per_passage: 5}}
self_edit: {{n: 1, sampling: {{temperature: 1.0, max_new_tokens: 12}}}}
inner_loop: {{lora: {{rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}}, epochs: 2, lr: 0.01, batch_size: 4}}
evaluation: {{max_new_tokens: 4, bootstrap_resamples: 200}}
conditions: [base, passage, base_synthetic, teacher_synthetic]
"""


def _run_stage(module: str, *args: str) -> None:
    import importlib

    mod = importlib.import_module(f"seal_repro.stages.{module}")
    import argparse

    parser = argparse.ArgumentParser()
    mod.add_args(parser)
    mod.run(parser.parse_args(list(args)))


@pytest.fixture
def workdir(tmp_path, tiny_model_dir, monkeypatch):
    (tmp_path / "tiny.yaml").write_text(TINY_SPEC.format(model=tiny_model_dir))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path


def _pipeline(out: str) -> dict:
    spec = f"{out}/spec"
    _run_stage("shared.resolve_spec", "--params", "tiny.yaml", "--out", spec)
    _run_stage("shared.prepare_model", "--spec-dir", spec, "--out", f"{out}/model")
    _run_stage("knowledge.prepare_data", "--spec-dir", spec, "--out", f"{out}/data")
    # one process for the four baseline conditions; the base model's self-edits are sampled there
    _run_stage("knowledge.baselines", "--spec-dir", spec, "--model", f"{out}/model", "--data", f"{out}/data",
               "--out", f"{out}/baselines")
    _run_stage("knowledge.report", "--spec-dir", spec, "--baselines", f"{out}/baselines", "--out", f"{out}/results",
               "--calibration", str(REPO / "results/calibration/grader_calibration.json"))
    return json.loads(Path(f"{out}/results/metrics.json").read_text())


def test_stages_end_to_end_are_deterministic_and_memoized(workdir):
    first = _pipeline("run1")
    for cond in ("base", "passage", "base_synthetic", "teacher_synthetic"):
        assert first[f"{cond}.n_questions"] == 15
        assert 0.0 <= first[f"{cond}.ci_low"] <= first[f"{cond}.accuracy"] <= first[f"{cond}.ci_high"] <= 1.0
        assert json.loads(Path(f"run1/baselines/{cond}/summary.json").read_text())["condition"] == cond
    edits = [json.loads(line) for line in Path("run1/baselines/self_edits.jsonl").read_text().splitlines()]
    assert len(edits) == 3 and len({e["passage_id"] for e in edits}) == 3  # self_edit.n = 1 per passage
    table = Path("run1/results/table.md").read_text()
    assert "Train on passage + synthetic (teacher)" in table and "46.3" in table  # paper column
    # The grader calibration was measured on SQuAD answers: on fictional data there is no judge-equivalent column.
    assert "no judge-equivalent column" in table and not any(k.endswith("judge_equivalent") for k in first)
    assert Path("run1/results/accuracy.png").stat().st_size > 1000
    prov = json.loads(Path("run1/results/provenance.json").read_text())
    assert prov["seed"] == 3 and len(prov["spec_hash"]) == 64 and prov["packages"]["torch"]

    # Same inputs again: every adapted round comes from the memo, metrics byte-identical.
    second = _pipeline("run2")
    assert Path("run1/results/metrics.json").read_bytes() == Path("run2/results/metrics.json").read_bytes()
    summary = json.loads(Path("run2/baselines/passage/summary.json").read_text())
    assert summary["memo_misses"] == 0 and summary["memo_hits"] == 3
    assert Path("run1/baselines/self_edits.jsonl").read_bytes() == Path("run2/baselines/self_edits.jsonl").read_bytes()
    assert first == second


def test_recompute_without_memo_gives_identical_metrics(workdir, monkeypatch):
    _pipeline("a")
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(workdir / "other-cache"))
    _pipeline("b")
    assert Path("a/results/metrics.json").read_bytes() == Path("b/results/metrics.json").read_bytes()


def _dvc(cwd: Path, *args: str) -> str:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    proc = subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout + proc.stderr


def copy_pipeline_repo(tmp_path: Path) -> Path:
    """A throwaway copy of what `dvc repro` needs (dvc.yaml, specs, the package, the grader calibration)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "specs"):
        src = REPO / name
        shutil.copytree(src, repo / name) if src.is_dir() else shutil.copy(src, repo / name)
    shutil.copytree(REPO / "seal_repro", repo / "seal_repro", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "results" / "calibration", repo / "results" / "calibration")
    return repo


def test_dvc_repro_reruns_only_what_a_change_touches(tmp_path, tiny_model_dir):
    repo = copy_pipeline_repo(tmp_path)
    (repo / "specs" / "tiny.yaml").write_text(TINY_SPEC.format(model=tiny_model_dir).replace(
        "[base, passage, base_synthetic, teacher_synthetic]", "[base, passage]"))
    (repo / "params.yaml").write_text("knowledge:\n  include: specs/tiny.yaml\n")
    env = dict(os.environ, SEAL_REPRO_CACHE=str(tmp_path / "cache"), GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t",
               GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    os.environ["SEAL_REPRO_CACHE"] = env["SEAL_REPRO_CACHE"]
    try:
        _dvc(repo, "init", "-q")
        out = _dvc(repo, "repro", "report")  # the knowledge pipeline (report and everything upstream)
        assert "Running stage 'report'" in out
        assert json.loads((repo / "results/knowledge/metrics.json").read_text())["passage.n_questions"] == 15
        again = _dvc(repo, "repro", "report")
        assert "Running stage" not in again, again

        # An inner-loop change re-runs the baselines stage and the report, nothing upstream of them; in the
        # baselines stage only the rounds that train miss the memo (the base rounds train nothing).
        (repo / "params.yaml").write_text("knowledge:\n  include: specs/tiny.yaml\n  inner_loop: {lr: 0.02}\n")
        out = _dvc(repo, "repro", "report")
        for stage in ("prepare_model", "prepare_data"):
            assert f"Running stage '{stage}'" not in out, out
        assert "Running stage 'baselines'" in out and "Running stage 'report'" in out
        summaries = {c: json.loads((repo / f"build/knowledge/baselines/{c}/summary.json").read_text())
                     for c in ("base", "passage")}
        assert (summaries["base"]["memo_hits"], summaries["base"]["memo_misses"]) == (3, 0)
        assert (summaries["passage"]["memo_hits"], summaries["passage"]["memo_misses"]) == (0, 3)
    finally:
        os.environ.pop("SEAL_REPRO_CACHE", None)
