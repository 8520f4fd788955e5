"""SEAL, CPT and continual stages on the tiny model: in-process end to end, resuming RL iterations, and dvc.yaml."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from seal_repro.report import paired_markdown, paired_metrics, paired_tests
from seal_repro.spec.rl import MAX_RL_ITERATIONS
from test_pipeline import TINY_SPEC, _run_stage, copy_pipeline_repo

SECTIONS = """\
rl:
  train_data: {{kind: fictional, offset: 3, n_passages: 2}}
  iterations: {iterations}
  k: 2
  repeats: 1
  sft: {{lora: {{rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}}, lr: 0.01, epochs: 1, grad_accum: 1}}
cpt: {{method: lora, epochs: 1}}
continual: {{n_passages: 3, start: seal}}
"""


def _write_spec(path: Path, model: Path, iterations: int = 2) -> None:
    path.write_text(TINY_SPEC.format(model=model) + SECTIONS.format(iterations=iterations))


def _rl(o: str, k: int) -> None:
    _run_stage("rl_iter", "--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--setup", f"{o}/rl/setup",
               "--iteration", str(k), "--prev", f"{o}/rl/iter{k - 1}", "--out", f"{o}/rl/iter{k}")


def _setup(o: str) -> None:
    _run_stage("resolve_spec", "--params", "tiny.yaml", "--out", f"{o}/spec")
    _run_stage("rl_setup", "--spec-dir", f"{o}/spec", "--data", f"{o}/data", "--out", f"{o}/rl/setup",
               "--iter0", f"{o}/rl/iter0")


@pytest.fixture
def work(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    _write_spec(tmp_path / "tiny.yaml", tiny_model_dir)
    return tmp_path


def test_seal_cpt_continual_end_to_end(work, tiny_model_dir):
    o = "o"
    _run_stage("resolve_spec", "--params", "tiny.yaml", "--out", f"{o}/spec")
    _run_stage("prepare_model", "--spec-dir", f"{o}/spec", "--out", f"{o}/model")
    _run_stage("prepare_data", "--spec-dir", f"{o}/spec", "--out", f"{o}/data")
    _run_stage("self_edits", "--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data", "--out", f"{o}/se")
    for c in ("base", "passage", "base_synthetic", "teacher_synthetic"):
        _run_stage("adapt_eval", "--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data",
                   "--self-edits", f"{o}/se", "--condition", c, "--out", f"{o}/cond/{c}")
    _setup(o)
    for k in range(1, MAX_RL_ITERATIONS + 1):
        _rl(o, k)
        _run_stage("seal_eval", "--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data",
                   "--policy", f"{o}/rl/iter{k}", "--out", f"{o}/cond/seal_iter{k}")
    _run_stage("cpt", "--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data", "--self-edits",
               f"{o}/se", "--conditions", f"{o}/cond", "--out", f"{o}/cpt")
    _run_stage("continual", "--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data",
               "--rl", f"{o}/rl", "--out", f"{o}/continual")
    _run_stage("report", "--spec-dir", f"{o}/spec", "--conditions", f"{o}/cond", "--out", f"{o}/results",
               "--rl", f"{o}/rl", "--cpt", f"{o}/cpt", "--continual", f"{o}/continual")

    m = json.loads(Path(f"{o}/results/metrics.json").read_text())
    assert m["seal.n_questions"] == 15 and m["seal.accuracy"] == m["seal_iter2.accuracy"]
    for key in ("seal_iter1.accuracy", "seal.p_vs_base", "seal.p_vs_teacher_synthetic", "seal.diff_vs_passage",
                "rl.iter1.mean_reward", "rl.iter2.share_beating_baseline", "rl.iter2.mean_self_edit_tokens",
                "cpt.teacher_synthetic.accuracy", "cpt.seal.accuracy", "cpt.seal.p_vs_base", "continual.mean_forgetting",
                "continual.final_mean_accuracy"):
        assert key in m, key
    assert "seal_iter3.accuracy" not in m and m["rl.iter1.sampled"] == 4 and m["rl.iter1.kept"] == 2
    assert m["cpt.base.n_questions"] == 15 and 0 <= m["seal.p_vs_base"] <= 1
    table = Path(f"{o}/results/table.md").read_text()
    for text in ("| SEAL |", "47.0", "p (sign-flip)", "ReST-EM iterations", "Continued pretraining — 3 passages",
                 "paper v1 (LoRA)", "retention matrix"):
        assert text in table, text
    figs = Path(f"{o}/results/figures")
    assert sorted(f.name for f in figs.iterdir()) == ["continual_forgetting.png", "continual_retention.png",
                                                      "cpt.png", "seal_iterations.png"]
    assert json.loads(Path(f"{o}/rl/iter3/summary.json").read_text()) == {"iteration": 3, "active": False}
    assert json.loads(Path(f"{o}/cond/seal_iter3/summary.json").read_text())["skipped"]
    cont = json.loads(Path(f"{o}/continual/summary.json").read_text())
    assert len(cont["matrix"]) == 4 and all(len(r) == 3 for r in cont["matrix"]) and cont["matrix"][1][1] is None
    samples = [json.loads(line) for line in Path(f"{o}/rl/iter1/samples.jsonl").read_text().splitlines()]
    assert len(samples) == 4 and sum(s["kept"] for s in samples) == 2 and all("reward" in s for s in samples)

    # The saved policy is a standard PEFT folder: plain transformers + peft load it and generate.
    code = ("import sys; from transformers import AutoModelForCausalLM, AutoTokenizer; from peft import PeftModel; "
            "b = AutoModelForCausalLM.from_pretrained(sys.argv[1]); t = AutoTokenizer.from_pretrained(sys.argv[1]); "
            "p = PeftModel.from_pretrained(b, sys.argv[2]); ids = t('the town', return_tensors='pt')['input_ids']; "
            "print(p.generate(input_ids=ids, max_new_tokens=4, min_new_tokens=4, do_sample=False).shape[1] - ids.shape[1])")
    out = subprocess.run([sys.executable, "-c", code, str(tiny_model_dir), f"{o}/rl/iter2/policy"], capture_output=True,
                         text=True, check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert out.stdout.strip().splitlines()[-1] == "4"


def test_raising_rl_iterations_keeps_the_finished_iteration(work, tiny_model_dir):
    o = "o"
    _write_spec(Path("tiny.yaml"), tiny_model_dir, iterations=1)
    _run_stage("resolve_spec", "--params", "tiny.yaml", "--out", f"{o}/spec")
    _run_stage("prepare_model", "--spec-dir", f"{o}/spec", "--out", f"{o}/model")
    _run_stage("prepare_data", "--spec-dir", f"{o}/spec", "--out", f"{o}/data")
    _setup(o)
    plan1 = Path(f"{o}/rl/setup/iter1.json").read_bytes()
    _rl(o, 1)
    _rl(o, 2)
    assert json.loads(Path(f"{o}/rl/iter2/summary.json").read_text()) == {"iteration": 2, "active": False}
    done = {p: p.read_bytes() for p in Path(f"{o}/rl/iter1").rglob("*") if p.is_file()}

    _write_spec(Path("tiny.yaml"), tiny_model_dir, iterations=2)
    _setup(o)
    # What iteration 1 depends on is unchanged (DVC keeps it); iteration 2's plan turned active.
    assert Path(f"{o}/rl/setup/iter1.json").read_bytes() == plan1
    assert json.loads(Path(f"{o}/rl/setup/iter2.json").read_text())["active"]
    _rl(o, 2)
    assert {p: p.read_bytes() for p in Path(f"{o}/rl/iter1").rglob("*") if p.is_file()} == done
    second = json.loads(Path(f"{o}/rl/iter2/summary.json").read_text())
    assert second["active"] and second["memo_misses"] == 2 * 2 + 2  # its own samples, from iteration 1's policy
    cfg = json.loads(Path(f"{o}/rl/iter2/policy/adapter_config.json").read_text())
    assert cfg["r"] == 4  # iteration 1's rank-2 LoRA stacked under iteration 2's

    # Re-running an iteration whose inputs are unchanged computes no inner-loop round: all come from the memo.
    _rl(o, 2)
    again = json.loads(Path(f"{o}/rl/iter2/summary.json").read_text())
    assert again["memo_misses"] == 0 and again["memo_hits"] == second["memo_hits"] + second["memo_misses"]


def test_rl_setup_rejects_training_passages_that_are_evaluation_passages(work):
    from seal_repro.errors import DataError

    _run_stage("resolve_spec", "--params", "tiny.yaml", "--out", "o/spec")
    _run_stage("prepare_data", "--spec-dir", "o/spec", "--out", "o/data")
    rows = Path("o/data/passages.jsonl").read_text().splitlines()
    Path("o/data/passages.jsonl").write_text("\n".join(rows + [rows[0].replace("fict-0000", "fict-0003")]) + "\n")
    with pytest.raises(DataError, match="also evaluation passages: fict-0003"):
        _setup("o")


def test_paired_test_in_report_reports_either_direction():
    def recs(cond, accs):
        return [{"condition": cond, "passage_id": f"p{i}", "correct": c} for i, a in enumerate(accs)
                for c in [1.0] * a + [0.0] * (4 - a)]

    seal = recs("seal", [3, 4, 2, 3, 4, 3])
    tests = paired_tests(seal, {"base": recs("base", [0, 1, 0, 1, 2, 0]), "passage": recs("passage", [3, 4, 2, 3, 4, 4])},
                         resamples=500, seed=0)
    assert tests["base"].p_value == pytest.approx(2 / 64) and tests["base"].diff > 0  # better on all 6 passages
    assert tests["passage"].diff < 0 and tests["passage"].p_value == 1.0  # one passage worse: not significant
    m = paired_metrics("seal", tests)
    assert m["seal.p_vs_base"] == pytest.approx(0.03125) and m["seal.diff_vs_passage"] == pytest.approx(-1 / 24, abs=1e-6)
    md = "\n".join(paired_markdown("SEAL", tests, 6))
    assert "Base model (better, p = 0.0312)" in md and "| Train on passage | -4.2 |" in md


def test_dvc_yaml_runs_one_stage_per_iteration():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    rl_iter, seal_eval = stages["rl_iter"], stages["seal_eval"]
    assert sorted(int(k) for k in rl_iter["foreach"]) == list(range(1, MAX_RL_ITERATIONS + 1))
    assert all(v["prev"] == int(k) - 1 for k, v in rl_iter["foreach"].items())
    assert seal_eval["foreach"] == list(range(1, MAX_RL_ITERATIONS + 1))
    deps = rl_iter["do"]["deps"]
    # an iteration depends on its own plan file, never on the whole rl section (which holds the count)
    assert "build/knowledge/rl/setup/iter${key}.json" in deps and "build/knowledge/spec/rl.yaml" not in deps
    assert "build/knowledge/rl/iter${item.prev}" in deps
    for k in range(1, MAX_RL_ITERATIONS + 1):
        assert f"build/knowledge/conditions/seal_iter{k}" in stages["cpt"]["deps"]
        assert f"build/knowledge/rl/iter{k}" in stages["continual"]["deps"]


def _dvc(repo: Path, *args: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([str(Path(sys.executable).parent / "dvc"), *args], cwd=repo, env=env, capture_output=True,
                          text=True, timeout=900)


@pytest.mark.slow
def test_dvc_repro_killed_in_the_second_iteration_resumes_there(tmp_path, tiny_model_dir):
    repo = copy_pipeline_repo(tmp_path)
    # a long policy SFT keeps the second iteration running long enough to be killed in it
    spec = (TINY_SPEC.format(model=tiny_model_dir) + SECTIONS.format(iterations=2)).replace(
        "epochs: 1, grad_accum: 1", "epochs: 200, grad_accum: 1")
    (repo / "specs" / "tiny.yaml").write_text(spec)
    (repo / "params.yaml").write_text("knowledge:\n  include: specs/tiny.yaml\n")
    env = dict(os.environ, SEAL_REPRO_CACHE=str(tmp_path / "cache"), SEAL_REPRO_THREADS="1",
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}", GIT_AUTHOR_NAME="t",
               GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@t")
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True, env=env)
    assert _dvc(repo, "init", "-q", env=env).returncode == 0

    dvc = [str(Path(sys.executable).parent / "dvc"), "repro", "report"]
    proc = subprocess.Popen(dvc, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    second = repo / "build/knowledge/rl/iter2"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not second.exists():
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "dvc repro finished before the second iteration could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (second / "summary.json").exists()
    first = (repo / "build/knowledge/rl/iter1/summary.json").read_bytes()

    out = _dvc(repo, "repro", "report", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Running stage 'rl_iter@1'" not in out.stdout and "Running stage 'rl_iter@2'" in out.stdout
    assert (repo / "build/knowledge/rl/iter1/summary.json").read_bytes() == first
    metrics = json.loads((repo / "results/knowledge/metrics.json").read_text())
    assert "seal_iter2.accuracy" in metrics and "rl.iter2.mean_reward" in metrics


def test_seal_repro_run_runs_the_rl_cpt_and_continual_stages_too(work):
    from seal_repro.cli import main

    assert main(["run", "tiny.yaml", "--out", "r"]) == 0
    m = json.loads(Path("r/results/metrics.json").read_text())
    for key in ("base.accuracy", "seal_iter1.accuracy", "seal_iter2.accuracy", "seal.p_vs_base", "rl.iter2.kept",
                "cpt.seal.accuracy", "continual.mean_forgetting"):
        assert key in m, key
    assert "seal_iter3.accuracy" not in m
    assert (Path("r/results/figures") / "seal_iterations.png").exists()
