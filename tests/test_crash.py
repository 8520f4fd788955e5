"""A stage killed with SIGKILL mid-run loses nothing: the re-run reuses every finished round."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from test_pipeline import TINY_SPEC, _run_stage


def _stage_cmd() -> list[str]:
    return [sys.executable, "-m", "seal_repro.stages.knowledge.baselines", "--spec-dir", "o/spec", "--model", "o/model",
            "--data", "o/data", "--out", "o/baselines"]


def test_kill_9_during_inner_loop_then_rerun_matches_uninterrupted(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # the baselines stage with one condition: 6 rounds (one teacher self-edit per passage), each long enough to kill in
    spec = TINY_SPEC.format(model=tiny_model_dir).replace("n_passages: 3", "n_passages: 6").replace(
        "epochs: 2", "epochs: 30").replace("[base, passage, base_synthetic, teacher_synthetic]", "[teacher_synthetic]")
    assert "conditions: [teacher_synthetic]" in spec
    Path("tiny.yaml").write_text(spec)
    _run_stage("shared.resolve_spec", "--params", "tiny.yaml", "--out", "o/spec")
    _run_stage("shared.prepare_model", "--spec-dir", "o/spec", "--out", "o/model")
    _run_stage("knowledge.prepare_data", "--spec-dir", "o/spec", "--out", "o/data")

    env = dict(os.environ, SEAL_REPRO_CACHE=str(tmp_path / "killed"), SEAL_REPRO_THREADS="1")
    proc = subprocess.Popen(_stage_cmd(), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rounds = tmp_path / "killed" / "rounds"
    deadline = time.time() + 300
    while time.time() < deadline and len(list(rounds.rglob("*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(list(rounds.rglob("*.json")))
    assert 2 <= done_before < 6, "the stage should have been killed mid-run"
    for f in rounds.rglob("*.json"):  # atomic writes: a kill leaves at most a stray temp file, never half a round
        json.loads(f.read_text())

    subprocess.run(_stage_cmd(), env=env, check=True, capture_output=True)
    resumed = json.loads(Path("o/baselines/teacher_synthetic/summary.json").read_text())
    assert resumed["memo_hits"] == done_before and resumed["memo_misses"] == 6 - done_before
    records_resumed = Path("o/baselines/teacher_synthetic/records.jsonl").read_bytes()

    env["SEAL_REPRO_CACHE"] = str(tmp_path / "fresh")
    subprocess.run(_stage_cmd(), env=env, check=True, capture_output=True)
    assert Path("o/baselines/teacher_synthetic/records.jsonl").read_bytes() == records_resumed
