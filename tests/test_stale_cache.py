"""Caches cannot go stale: edit the code that computes rounds (batching.py) and both DVC and the memo notice.

DVC: the stages list every file their modules run (tests/test_layout.py checks the lists), so after an edit
`dvc status` names exactly the stages that run the edited file. Memo: every round's key holds a hash of the code
that computes it (seal_repro/codehash.py), so the edit makes the memo miss.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from seal_repro import codehash
from seal_repro.codehash import ROOT, code_fingerprint
from seal_repro.memo import Memo

REPO = ROOT.parent
KNOWLEDGE_ROUND = ("seal_repro.knowledge.inner_loop", "seal_repro.lmeval.knowledge")
TRAINING_STAGES = {"baselines", "rl", "cpt", "continual", "fewshot_baselines", "fewshot_rl"}
UNTOUCHED_STAGES = {"resolve_spec", "prepare_model", "prepare_data", "report", "fewshot_resolve_spec",
                    "fewshot_prepare_model", "fewshot_tasks", "fewshot_report"}


def _copy_package(dest: Path) -> Path:
    shutil.copytree(ROOT, dest / "seal_repro", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dest / "seal_repro"


def _edit(path: Path) -> None:
    path.write_text(path.read_text(encoding="utf-8") + "\n# an edit\n", encoding="utf-8")


def test_editing_batching_py_makes_the_memo_miss(tmp_path):
    pkg = _copy_package(tmp_path)
    before = code_fingerprint(*KNOWLEDGE_ROUND, root=pkg)
    assert before == code_fingerprint(*KNOWLEDGE_ROUND, root=ROOT)  # the same files: the same key
    memo = Memo(tmp_path / "memo")
    memo.put(before, {"answers": []})
    _edit(pkg / "batching.py")
    codehash._fingerprint.cache_clear()  # a process computes each fingerprint once; this one saw the edit
    after = code_fingerprint(*KNOWLEDGE_ROUND, root=pkg)
    assert after != before
    assert memo.get(after) is None and memo.misses == 1


def test_editing_code_no_round_runs_keeps_the_memo(tmp_path):
    pkg = _copy_package(tmp_path)
    before = code_fingerprint(*KNOWLEDGE_ROUND, root=pkg)
    _edit(pkg / "report" / "common.py")  # the report reads rounds' results; it computes none
    codehash._fingerprint.cache_clear()
    assert code_fingerprint(*KNOWLEDGE_ROUND, root=pkg) == before


def test_the_lmeval_task_files_are_part_of_a_rounds_code(tmp_path):
    pkg = _copy_package(tmp_path)
    before = code_fingerprint(*KNOWLEDGE_ROUND, root=pkg)
    _edit(pkg / "lmeval_tasks" / "seal_knowledge" / "utils.py")
    codehash._fingerprint.cache_clear()
    assert code_fingerprint(*KNOWLEDGE_ROUND, root=pkg) != before


def _dvc(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _placeholders(project: Path) -> None:
    """Every output and dependency of dvc.yaml as an empty file or folder, so `dvc commit` can record them."""
    import yaml

    stages = yaml.safe_load((project / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    paths = []
    for stage in stages.values():
        for key in ("outs", "metrics", "plots", "deps"):
            paths += [p if isinstance(p, str) else next(iter(p)) for p in stage.get(key, [])]
    for rel in paths:
        path = project / rel
        if path.exists():
            continue
        if path.suffix:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("{}\n" if path.suffix == ".json" else "\n", encoding="utf-8")
        else:
            path.mkdir(parents=True, exist_ok=True)
            (path / ".placeholder").write_text("\n", encoding="utf-8")


def _changed(status: str) -> set[str]:
    return {name.split("@")[0] for name in json.loads(status or "{}")}


def test_dvc_status_names_the_training_stages_after_batching_py_changes(tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copy(REPO / name, project / name)
    shutil.copytree(REPO / "specs", project / "specs")
    _copy_package(project)
    init = _dvc(project, "init", "--no-scm", "-q")
    assert init.returncode == 0, init.stderr
    _placeholders(project)
    commit = _dvc(project, "commit", "-f", "-q")
    assert commit.returncode == 0, commit.stderr
    before = _dvc(project, "status", "--json")
    assert before.returncode == 0 and _changed(before.stdout) == set(), before.stdout
    _edit(project / "seal_repro" / "batching.py")
    after = _dvc(project, "status", "--json")
    assert after.returncode == 0, after.stderr
    changed = _changed(after.stdout)
    assert TRAINING_STAGES <= changed, changed
    assert not (UNTOUCHED_STAGES & changed), changed
