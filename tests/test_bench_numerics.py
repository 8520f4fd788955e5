"""`seal-repro bench numerics` on the tiny random Llama: the setting grid and its environments, the tables and the
JSON, and determinism within a kernel path (the same setting run twice, each in a fresh process, gives the same
adapter hash, loss and answers). One run of 2 settings x 2 repeats: four subprocesses, ~20 s on 2 cores."""

from __future__ import annotations

import json

import pytest

from seal_repro import cli
from seal_repro.bench import numerics
from seal_repro.errors import UserError

TINY = """\
domain: knowledge
seed: 1
model: {{source: local, path: {model}, chat_template: false, device: cpu}}
data: {{kind: fictional, n_passages: 1, questions_per_passage: 5}}
inner_loop: {{lora: {{rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}}, epochs: 1, lr: 0.01, batch_size: 4}}
evaluation: {{max_new_tokens: 3}}
conditions: [teacher_synthetic]
"""

AVX2 = {"avx2", "fma", "sse4_2"}


def test_grid_envs_never_lift_a_path_above_its_own_kernels():
    paths = numerics.available_paths(AVX2)
    assert paths == ["native", "avx2", "sse42"]
    settings = numerics.grid(paths)
    assert settings[0] == numerics.BASELINE and len(settings) == len(set(settings))
    # a switch needing AVX2 is not offered on the SSE4.2 path; pinning ATen to avx2 keeps sse42 at default
    assert "sse42/cbwr_avx2" not in settings and "sse42/pin_avx2" not in settings
    assert numerics.setting_env("sse42", "pin_scalar")[0]["ATEN_CPU_CAPABILITY"] == "default"
    env, det = numerics.setting_env("native", "pin_avx2_det")
    assert env == {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"} and det
    assert numerics.setting_env("native", "none") == ({}, False)
    # MKL_CBWR picks MKL's branch; a path's MKL_ENABLE_INSTRUCTIONS stays only where it names the same branch
    # (MKL lets AVX512 override MKL_CBWR=AVX2, which no real CPU does)
    assert "MKL_ENABLE_INSTRUCTIONS" not in numerics.setting_env("avx512", "pin_avx2")[0]
    assert numerics.setting_env("avx2", "cbwr_avx2")[0]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert numerics.setting_env("avx2", "none")[0]["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    # every variable a setting sets is one the driver clears first (nothing leaks in from the caller's shell)
    assert all(k in numerics.CONTROLLED for s in settings for k in numerics.setting_env(*s.split("/"))[0])
    # a bare switch means every path with it; the baseline is always added (the ratios are relative to it)
    assert numerics.parse_settings("det", paths) == ["native/none", "native/det", "avx2/det", "sse42/det"]
    for bad in ("avx512/none", "nope/none", "sse42/cbwr_avx2", "fast"):
        with pytest.raises(UserError):
            numerics.parse_settings(bad, paths)


def test_summary_groups_identical_hashes_and_flags_unstable_settings():
    def run(adapter, answers, seconds):
        return {"adapter_sha256": adapter, "answers_sha256": answers, "round_seconds": seconds, "final_loss": "1.0",
                "answers": [], "aten_capability": "X", "env": {}}

    settings = ["native/none", "avx2/none", "native/pin_avx2", "avx2/pin_avx2"]
    runs = {"native/none": [run("a", "q", 1.0), run("a", "q", 3.0)],
            "avx2/none": [run("b", "q", 3.0), run("b", "q", 3.0)],
            "native/pin_avx2": [run("c", "q", 4.0), run("c", "r", 4.0)],  # answers changed between repeats
            "avx2/pin_avx2": [run("c", "q", 4.0), {"error": "worker exit 1: boom", "env": {}}]}
    s = numerics.summarize(settings, runs)
    rows = {r["setting"]: r for r in s["settings"]}
    assert [rows[x]["adapter_class"] for x in settings] == ["A", "B", "C", "C"]
    assert rows["native/pin_avx2"]["adapter_same_as"] == ["avx2/pin_avx2"]
    assert rows["avx2/none"]["ratio_vs_baseline"] == pytest.approx(1.5)  # medians: 3.0 / 2.0
    assert rows["native/none"]["stable"] and not rows["native/pin_avx2"]["stable"]
    assert not rows["avx2/pin_avx2"]["stable"] and rows["avx2/pin_avx2"]["errors"]
    sw = {x["switch"]: x for x in s["switches"]}
    assert not sw["none"]["adapter_identical_across_paths"] and sw["none"]["answers_identical_across_paths"]
    assert sw["pin_avx2"]["adapter_identical_across_paths"] and sw["pin_avx2"]["adapter_classes"] == "CC"
    table = numerics.format_tables(s)
    assert "| pin_avx2 | native, avx2 |" in table and "adapter + answers" in table and "ERROR" in table


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("numerics")
    spec = tmp / "tiny.yaml"
    spec.write_text(TINY.format(model=tiny_model_dir))
    out = tmp / "numerics.json"
    # The second setting is another kernel path where this CPU has one (avx2 under an AVX-512 CPU), else a switch
    # on the native path; either way two settings, each run twice in fresh processes.
    second = "avx2/none" if "avx512" in numerics.available_paths() else "native/det"
    code = cli.main(["bench", "numerics", "--spec", str(spec), "--model-dir", str(tiny_model_dir), "--settings",
                     f"native/none,{second}", "--repeats", "2", "--questions", "2", "--timeout", "120",
                     "--out", str(out)])
    return code, json.loads(out.read_text()), second


def test_same_setting_twice_gives_the_same_adapter(bench_run):
    code, result, second = bench_run
    assert code == 0
    rows = {r["setting"]: r for r in result["settings"]}
    assert list(rows) == ["native/none", second]
    for name, row in rows.items():
        runs = result["runs"][name]
        assert len(runs) == 2 and not row["errors"], row["errors"]
        # determinism within a path: two fresh processes, byte-identical adapters, the same loss and answers
        assert runs[0]["adapter_sha256"] == runs[1]["adapter_sha256"]
        assert runs[0]["final_loss"] == runs[1]["final_loss"] and runs[0]["answers"] == runs[1]["answers"]
        assert row["stable"] and len(row["adapter_sha256"]) == 64 and len(row["answers"]) == 2
        assert row["round_seconds_median"] > 0 and row["adapter_class"] in "AB"
    base = rows["native/none"]
    assert base["ratio_vs_baseline"] == 1.0 and base["adapter_class"] == "A" and base["max_abs_diff_vs_baseline"] == 0
    # the class letters agree with the hashes, and the diff against the baseline is 0 exactly when they are equal
    other = rows[second]
    same = other["adapter_sha256"] == base["adapter_sha256"]
    assert (other["adapter_class"] == "A") == same and (other["max_abs_diff_vs_baseline"] == 0) == same
    assert other["aten_capability"] and result["environment"]["torch"] and result["round"]["steps"] >= 1
    if second == "avx2/none":
        assert other["aten_capability"] == "AVX2" and other["env"]["ATEN_CPU_CAPABILITY"] == "avx2"
    else:
        assert other["deterministic"]
    assert [s["switch"] for s in result["switches"]] == (["none"] if second == "avx2/none" else ["none", "det"])
