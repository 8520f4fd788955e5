"""Provenance beside every result, and result folders that keep different specs apart.

`assert_provenance` is the one definition of a complete provenance.json; the end-to-end tests of both
domains call it on what their report stage wrote (tests/test_security.py runs `seal-repro run` on a
knowledge spec, tests/fewshot/test_fewshot_stages.py the fewshot stages).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from seal_repro import provenance
from seal_repro.cli import main
from seal_repro.errors import UserError
from seal_repro.spec import load_spec, spec_hash

REPO = Path(__file__).resolve().parents[1]
MIN = "domain: knowledge\nseed: {seed}\nmodel: {{chat_template: false}}\n"


def assert_provenance(prov: dict, spec) -> None:
    """Everything the issue asks a result folder to hold: the resolved spec and its hash, package versions,
    the git commit, seeds, hardware, and the paper/protocol version the spec claims."""
    if isinstance(spec, (str, Path)):  # a resolve_spec folder
        from seal_repro.stages.helpers import load_resolved

        spec = load_resolved(spec)
    for key in provenance.PROVENANCE_KEYS:
        assert key in prov, key
    assert prov["spec"] == spec.model_dump(mode="json")  # the resolved spec, defaults filled in
    assert prov["spec_hash"] == spec_hash(spec) and re.fullmatch(r"[0-9a-f]{64}", prov["spec_hash"])
    assert prov["packages"]["seal-repro"] and prov["packages"]["torch"] and prov["packages"]["pydantic"]
    assert re.fullmatch(r"[0-9a-f]{64}", prov["lock"]["files"]["requirements/lock.txt"] or "")  # installed from
    assert prov["lock"]["torch"]["version"] == prov["packages"]["torch"]  # the build TORCH_SPEC chose
    assert re.fullmatch(r"[0-9a-f]{40}", prov["git"]["commit"] or ""), prov["git"]  # this checkout's commit
    assert isinstance(prov["git"]["dirty"], bool)
    assert prov["seed"] == spec.seed and prov["seeds"]["seed"] == spec.seed
    assert {"platform", "python", "cpu_count"} <= set(prov["hardware"]) and "cuda" in prov["hardware"]
    # the kernel path a run's numerics followed: the CPU's ISA flags, torch's choice and the switches that pin it
    assert set(prov["hardware"]["numerics_env"]) == {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS",
                                                     "ONEDNN_MAX_CPU_ISA"}
    assert prov["hardware"]["torch_cpu_capability"] in ("DEFAULT", "AVX2", "AVX512", "NO AVX", "ZVECTOR", "VSX")
    assert prov["hardware"]["cpu_numerics_mode"] in ("portable", "native")
    if prov["hardware"]["cpu_numerics_mode"] == "portable" and "avx2" in (prov["hardware"]["cpu_isa"] or []):
        assert prov["hardware"]["torch_cpu_capability"] == "AVX2"  # the package's pin (seal_repro/numerics.py)
        assert prov["hardware"]["mkl_branch"] in ("AVX2", "AUTO")  # AUTO: the pin is Intel-only, another vendor
    assert "2506.10943" in prov["paper"]
    assert prov["protocol"] == spec.protocol
    json.dumps(prov)  # plain JSON all the way down


@pytest.mark.parametrize("name", ["knowledge/default.yaml", "fewshot/default.yaml", "knowledge/paper-qwen2.5-7b-cpt.yaml"])
def test_collect_holds_every_key_for_both_domains(name, monkeypatch):
    monkeypatch.chdir(REPO)
    spec = load_spec(REPO / "specs" / name)
    prov = provenance.collect(spec, spec_hash(spec))
    assert_provenance(prov, spec)
    assert spec.protocol and prov["protocol"] == spec.protocol  # every shipped spec says what it reproduces
    if spec.domain == "knowledge" and spec.cpt is not None:
        assert prov["protocol_versions"]["cpt"] == "paper v1 (LoRA)"


def test_lock_hash_is_the_committed_lock_files_sha256(tmp_path):
    import hashlib

    state = provenance.lock_state()
    for rel in ("requirements/lock.txt", "requirements/no-deps.txt"):
        assert state["files"][rel] == hashlib.sha256((REPO / rel).read_bytes()).hexdigest()
    assert set(state["torch"]) == {"version", "cuda", "hip", "git"}
    (tmp_path / "requirements").mkdir()
    (tmp_path / "requirements" / "lock.txt").write_bytes(b"x==1\n")
    other = provenance.lock_state(tmp_path)  # an edited lock gets another hash; a missing file records None
    assert other["files"] == {"requirements/lock.txt": hashlib.sha256(b"x==1\n").hexdigest(),
                              "requirements/no-deps.txt": None}


def test_git_commit_is_found_from_outside_the_checkout(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not a git repository: the code's own checkout answers
    state = provenance.git_state()
    assert re.fullmatch(r"[0-9a-f]{40}", state["commit"] or "")


# --- results isolation: `seal-repro run` folders ------------------------------------------------------------------


def _spec(tmp_path: Path, rel: str, seed: int) -> Path:
    path = tmp_path / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(MIN.format(seed=seed))
    return path


def test_default_folder_is_unique_per_spec_even_with_the_same_file_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _spec(tmp_path, "specs/knowledge/ablations/x.yaml", 1)
    b = _spec(tmp_path, "specs/other/x.yaml", 2)
    fa = provenance.run_folder(a, load_spec(a))
    fb = provenance.run_folder(b, load_spec(b))
    assert fa != fb and fa.parent == fb.parent == Path("runs")
    assert fa.name == f"x-{spec_hash(load_spec(a))[:8]}"
    assert json.loads((fa / provenance.RUN_MARKER).read_text())["spec_hash"] == spec_hash(load_spec(a))
    assert provenance.run_folder(a, load_spec(a)) == fa  # the same spec again: its own folder, resumable


def test_a_folder_holding_another_specs_results_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _spec(tmp_path, "a/x.yaml", 1)
    b = _spec(tmp_path, "b/x.yaml", 2)
    provenance.run_folder(a, load_spec(a), "shared")
    before = sorted(p.name for p in Path("shared").iterdir())
    with pytest.raises(UserError) as err:
        provenance.run_folder(b, load_spec(b), "shared")
    assert len(err.value.lines) == 1 and "holds the results of another spec" in err.value.lines[0]
    assert "a/x.yaml" in err.value.lines[0] and "--out" in err.value.lines[0]
    assert sorted(p.name for p in Path("shared").iterdir()) == before  # nothing touched
    assert json.loads(Path("shared", provenance.RUN_MARKER).read_text())["spec_file"].endswith("a/x.yaml")


def test_a_run_from_before_the_marker_is_recognised_by_its_resolved_spec(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _spec(tmp_path, "a.yaml", 1)
    (tmp_path / "old/build/spec").mkdir(parents=True)
    (tmp_path / "old/build/spec/hash.txt").write_text(spec_hash(load_spec(a)) + "\n")
    assert provenance.run_folder(a, load_spec(a), "old") == Path("old")
    (tmp_path / "old2/build/spec").mkdir(parents=True)
    (tmp_path / "old2/build/spec/hash.txt").write_text("0" * 64 + "\n")
    with pytest.raises(UserError, match="another spec"):
        provenance.run_folder(a, load_spec(a), "old2")


def test_a_non_empty_folder_that_is_not_a_run_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a = _spec(tmp_path, "a.yaml", 1)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes/todo.txt").write_text("keep me")
    with pytest.raises(UserError, match="not a `seal-repro run` folder"):
        provenance.run_folder(a, load_spec(a), "notes")
    assert provenance.run_folder(a, load_spec(a), "fresh") == Path("fresh")  # a new folder is fine


def test_seal_repro_run_refuses_another_specs_folder_with_exit_2_before_any_work(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    a = _spec(tmp_path, "specs/knowledge/ablations/x.yaml", 1)
    b = _spec(tmp_path, "specs/other/x.yaml", 2)
    provenance.run_folder(a, load_spec(a), "runs/x")
    assert main(["run", str(b), "--out", "runs/x"]) == 2
    out, err = capsys.readouterr()
    assert err.count("\n") == 1 and err.startswith("runs/x: holds the results of another spec") and "Traceback" not in err
    assert sorted(p.name for p in Path("runs/x").iterdir()) == [provenance.RUN_MARKER]  # no stage ran
