"""SEAL, CPT and continual stages on the tiny model: in-process end to end, one rl stage running every ReST-EM
iteration (any number of them, no edit to dvc.yaml), resuming through the memo, and dvc.yaml."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from seal_repro import rest_em
from seal_repro.knowledge import rl as knowledge_rl
from seal_repro.knowledge import self_edits as knowledge_self_edits
from seal_repro.report.knowledge import paired_markdown, paired_metrics, paired_tests
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

# What the spies below wrap, taken before any test patches them.
RUN_ROUNDS, SFT_POLICY, GENERATE = knowledge_rl.run_rounds, rest_em.sft_policy, knowledge_self_edits.generate_details


def _write_spec(path: Path, model: Path, iterations: int = 2) -> None:
    path.write_text(TINY_SPEC.format(model=model) + SECTIONS.format(iterations=iterations))


def _prepare(o: str) -> None:
    _run_stage("shared.resolve_spec", "--params", "tiny.yaml", "--out", f"{o}/spec")
    _run_stage("shared.prepare_model", "--spec-dir", f"{o}/spec", "--out", f"{o}/model")
    _run_stage("knowledge.prepare_data", "--spec-dir", f"{o}/spec", "--out", f"{o}/data")


def _rl(o: str) -> None:
    _run_stage("knowledge.rl", "--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data",
               "--out", f"{o}/rl")


class Spy:
    """What the rl stage computes rather than reads from the memo: per `run_rounds` call (named by its progress
    label: `rl iteration <i>`, `seal_iter<i>`) the memo (hits, misses), policy SFTs run, sampling calls run."""

    def __init__(self, monkeypatch):
        self.rounds: dict[str, tuple[int, int]] = {}
        self.sft = 0
        self.sampled = 0

        def run_rounds(rounds, kit, spec, fingerprint, memo, desc="inner loop", **kw):
            hits, misses = memo.hits, memo.misses
            out = RUN_ROUNDS(rounds, kit, spec, fingerprint, memo, desc, **kw)
            self.rounds[desc] = (memo.hits - hits, memo.misses - misses)
            return out

        def sft_policy(*args, **kw):
            self.sft += 1
            return SFT_POLICY(*args, **kw)

        def generate_details(*args, **kw):
            self.sampled += 1
            return GENERATE(*args, **kw)

        monkeypatch.setattr(knowledge_rl, "run_rounds", run_rounds)
        monkeypatch.setattr(rest_em, "sft_policy", sft_policy)
        monkeypatch.setattr(knowledge_self_edits, "generate_details", generate_details)


def _outputs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _without_memo_counts(summary: dict) -> dict:
    return {k: _without_memo_counts(v) if isinstance(v, dict) else v for k, v in summary.items()
            if k not in ("memo_hits", "memo_misses")}


@pytest.fixture
def work(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    _write_spec(tmp_path / "tiny.yaml", tiny_model_dir)
    return tmp_path


def test_seal_cpt_continual_end_to_end(work, tiny_model_dir):
    o = "o"
    _prepare(o)
    common = ("--spec-dir", f"{o}/spec", "--model", f"{o}/model", "--data", f"{o}/data")
    _run_stage("knowledge.baselines", *common, "--out", f"{o}/baselines")
    _run_stage("knowledge.rl", *common, "--out", f"{o}/rl")
    _run_stage("knowledge.cpt", *common, "--baselines", f"{o}/baselines", "--rl", f"{o}/rl", "--out", f"{o}/cpt")
    _run_stage("knowledge.continual", *common, "--rl", f"{o}/rl", "--out", f"{o}/continual")
    _run_stage("knowledge.report", "--spec-dir", f"{o}/spec", "--baselines", f"{o}/baselines", "--out", f"{o}/results",
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
    # the rl stage wrote exactly rl.iterations iterations, each followed by its SEAL condition
    assert json.loads(Path(f"{o}/rl/summary.json").read_text()) == {"skipped": False, "iterations": 2}
    assert sorted(p.name for p in Path(f"{o}/rl").iterdir() if p.is_dir()) == ["iter1", "iter2", "seal_iter1",
                                                                               "seal_iter2"]
    for k in (1, 2):
        assert json.loads(Path(f"{o}/rl/iter{k}/summary.json").read_text())["iteration"] == k
        assert json.loads(Path(f"{o}/rl/seal_iter{k}/summary.json").read_text())["condition"] == f"seal_iter{k}"
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


def test_raising_rl_iterations_recomputes_only_the_new_iteration(work, tiny_model_dir, monkeypatch):
    o = "o"
    _write_spec(Path("tiny.yaml"), tiny_model_dir, iterations=1)
    _prepare(o)
    first = Spy(monkeypatch)
    _rl(o)
    assert set(first.rounds) == {"rl iteration 1", "seal_iter1"} and first.sft == 1
    assert all(misses > 0 for _, misses in first.rounds.values())
    assert not Path(f"{o}/rl/iter2").exists() and not Path(f"{o}/rl/seal_iter2").exists()
    done = {name: _outputs(Path(f"{o}/rl/{name}")) for name in ("iter1", "seal_iter1")}

    _write_spec(Path("tiny.yaml"), tiny_model_dir, iterations=2)
    _run_stage("shared.resolve_spec", "--params", "tiny.yaml", "--out", f"{o}/spec")
    second = Spy(monkeypatch)
    _rl(o)
    # Iteration 1 and its SEAL condition: every round, sample and the policy come from the memo.
    assert second.rounds["rl iteration 1"] == (sum(first.rounds["rl iteration 1"]), 0)
    assert second.rounds["seal_iter1"] == (sum(first.rounds["seal_iter1"]), 0)
    # Iteration 2: its own samples (from iteration 1's policy) and rounds, one SFT; then seal_iter2's self-edits.
    assert second.rounds["rl iteration 2"] == (0, 2 * 2 + 2) and second.sft == 1 and second.sampled == 2
    assert second.rounds["seal_iter2"][1] > 0
    # Iteration 1's outputs are unchanged (the summaries only count the memo hits differently).
    for name, files in done.items():
        again = _outputs(Path(f"{o}/rl/{name}"))
        assert again.keys() == files.keys()
        for f, data in files.items():
            if f == "summary.json":
                assert _without_memo_counts(json.loads(again[f])) == _without_memo_counts(json.loads(data))
            else:
                assert again[f] == data, f"{name}/{f}"
    seal1 = json.loads(Path(f"{o}/rl/seal_iter1/summary.json").read_text())
    assert seal1["memo_misses"] == 0 and seal1["memo_hits"] == seal1["rounds"]  # 0 rounds computed for it
    cfg = json.loads(Path(f"{o}/rl/iter2/policy/adapter_config.json").read_text())
    assert cfg["r"] == 4  # iteration 1's rank-2 LoRA stacked under iteration 2's

    # Re-running with unchanged inputs computes nothing: no round, no SFT, no sampling.
    third = Spy(monkeypatch)
    _rl(o)
    assert all(misses == 0 for _, misses in third.rounds.values()) and len(third.rounds) == 4
    assert third.sft == 0 and third.sampled == 0


class Interrupted(Exception):
    pass


def test_an_interrupted_rl_stage_resumes_where_it_stopped(work, tiny_model_dir, monkeypatch):
    """The stage dies during iteration 2's policy SFT (after its rounds finished): the re-run computes only that
    SFT and what follows it; everything before it comes from the memo."""
    o = "o"
    _prepare(o)
    calls = []

    def dies_in_the_second_sft(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise Interrupted
        return SFT_POLICY(*args, **kw)

    monkeypatch.setattr(rest_em, "sft_policy", dies_in_the_second_sft)
    with pytest.raises(Interrupted):
        _rl(o)
    assert Path(f"{o}/rl/iter1/summary.json").exists() and not Path(f"{o}/rl/iter2/summary.json").exists()
    assert not Path(f"{o}/rl/seal_iter2").exists()

    spy = Spy(monkeypatch)
    _rl(o)
    assert {desc: misses for desc, (_, misses) in spy.rounds.items() if desc != "seal_iter2"} == {
        "rl iteration 1": 0, "seal_iter1": 0, "rl iteration 2": 0}
    assert spy.rounds["rl iteration 2"][0] == 2 * 2 + 2  # the interrupted iteration's rounds were kept
    assert spy.sft == 1 and spy.sampled == 1  # iteration 2's SFT; seal_iter2's self-edits (its samples were kept)
    assert json.loads(Path(f"{o}/rl/iter2/summary.json").read_text())["iteration"] == 2
    assert json.loads(Path(f"{o}/rl/summary.json").read_text()) == {"skipped": False, "iterations": 2}


def test_prepare_data_rejects_training_passages_that_are_evaluation_passages(work, monkeypatch):
    """Passages from different files are compared when loaded: a training passage that is also an evaluation
    passage stops prepare_data before it writes anything."""
    import dataclasses

    from seal_repro.errors import DataError
    from seal_repro.knowledge import prepare
    from seal_repro.spec.data import DataSpec

    load = prepare.load_passages

    def with_a_training_passage(data, seed):
        passages = load(data, seed=seed)
        if data.offset == 0:  # the evaluation passages: one is a copy of training passage fict-0003
            passages = passages + [dataclasses.replace(passages[0], id="fict-0003")]
        return passages

    monkeypatch.setattr(prepare, "load_passages", with_a_training_passage)
    _run_stage("shared.resolve_spec", "--params", "tiny.yaml", "--out", "o/spec")
    with pytest.raises(DataError, match="also evaluation passages: fict-0003"):
        _run_stage("knowledge.prepare_data", "--spec-dir", "o/spec", "--out", "o/data")
    assert not Path("o/data").exists()
    evaluation = load(DataSpec(kind="fictional", n_passages=3), seed=3)
    with pytest.raises(DataError, match="also evaluation passages: fict-0009"):  # the same text under another id
        prepare.check_disjoint([dataclasses.replace(evaluation[0], id="fict-0009")], evaluation)


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


def test_dvc_yaml_runs_every_iteration_in_one_rl_stage():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert not [name for name in stages if name.startswith(("rl_iter", "seal_eval", "rl_setup"))]
    assert not [name for name, st in stages.items() if "foreach" in st or "matrix" in st]
    rl = stages["rl"]
    argv = shlex.split(rl["cmd"])
    assert argv[:3] == ["python", "-m", "seal_repro.stages.knowledge.rl"] and "--iteration" not in argv
    # the stage reads the whole rl section (the count included) and writes every iteration into one folder
    assert "build/knowledge/spec/rl.yaml" in rl["deps"] and rl["outs"] == ["build/knowledge/rl"]
    for name in ("cpt", "continual", "report"):
        assert "build/knowledge/rl" in stages[name]["deps"], name
    import seal_repro.spec.rl as spec_rl

    assert not hasattr(spec_rl, "MAX_RL_ITERATIONS")


def _dvc_stage(stages: dict, name: str) -> None:
    """Run dvc.yaml's command for stage `name`, as written there, in this process (from the current folder)."""
    argv = shlex.split(stages[name]["cmd"])
    assert argv[:2] == ["python", "-m"] and argv[2].startswith("seal_repro.stages."), argv
    _run_stage(argv[2].removeprefix("seal_repro.stages."), *argv[3:])


def test_six_iterations_need_no_edit_to_dvc_yaml(tmp_path, tiny_model_dir, monkeypatch):
    """A scratch spec asking for 6 ReST-EM iterations (smallest sizes): dvc.yaml's own commands produce iter1..6 and
    seal_iter1..6."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    spec = TINY_SPEC.format(model=tiny_model_dir).replace("n_passages: 3", "n_passages: 1") + (
        "rl: {train_data: {kind: fictional, offset: 1, n_passages: 1}, iterations: 6, k: 1, repeats: 1,\n"
        "     sft: {lora: {rank: 1, alpha: 2, target_modules: [q_proj]}, lr: 0.01, epochs: 1, grad_accum: 1}}\n")
    Path("specs").mkdir()
    Path("specs/six.yaml").write_text(spec)
    Path("params.yaml").write_text("knowledge:\n  include: specs/six.yaml\n")
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name in ("resolve_spec", "prepare_model", "prepare_data", "rl"):
        _dvc_stage(stages, name)

    rl = Path("build/knowledge/rl")
    assert json.loads((rl / "summary.json").read_text()) == {"skipped": False, "iterations": 6}
    assert sorted(p.name for p in rl.iterdir() if p.is_dir()) == sorted(
        [f"iter{k}" for k in range(1, 7)] + [f"seal_iter{k}" for k in range(1, 7)])
    trained = 0
    for k in range(1, 7):
        summary = json.loads((rl / f"iter{k}" / "summary.json").read_text())
        assert summary["iteration"] == k and summary["seal"]["iteration"] == k
        trained += summary["policy_trained"]
        assert (rl / f"iter{k}" / "policy" / "adapter_config.json").exists()
        assert (rl / f"seal_iter{k}" / "records.jsonl").read_text().strip()
        assert json.loads((rl / f"seal_iter{k}" / "summary.json").read_text())["condition"] == f"seal_iter{k}"
    assert trained >= 1  # a policy was trained at all (rank 1 each, stacked)
    assert json.loads((rl / "iter6" / "policy" / "adapter_config.json").read_text())["r"] == max(1, trained)


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
    rl = repo / "build/knowledge/rl"
    first = rl / "iter1" / "summary.json"  # written once iteration 1 and seal_iter1 are done: iteration 2 starts
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not first.exists():
        time.sleep(0.05)
    time.sleep(1.0)
    assert proc.poll() is None, "dvc repro finished before the second iteration could be interrupted"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (rl / "iter2" / "summary.json").exists()
    done = {name: _outputs(rl / name) for name in ("iter1", "seal_iter1")}

    out = _dvc(repo, "repro", "report", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Running stage 'baselines'" not in out.stdout and "Running stage 'rl'" in out.stdout
    # DVC cleared the rl folder before re-running the stage: iteration 1 came back from the memo, unchanged
    seal1 = json.loads((rl / "seal_iter1" / "summary.json").read_text())
    assert seal1["memo_misses"] == 0 and seal1["memo_hits"] == seal1["rounds"]
    for name, files in done.items():
        again = _outputs(rl / name)
        assert {f: b for f, b in again.items() if f != "summary.json"} == \
            {f: b for f, b in files.items() if f != "summary.json"}, name
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
