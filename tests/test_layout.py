"""The layout's rules, checked: no import cycles, stages per domain and short, no stage importing another, one
construction site of the engine's training config, and DVC dependencies that cover every file a stage runs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

from seal_repro.codehash import PACKAGE, ROOT, closure

REPO = ROOT.parent
MAX_STAGE_LINES = 80
DOMAINS = ("knowledge", "fewshot", "shared")


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        rel = f.relative_to(REPO).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = f
    return out


def _import_graph() -> dict[str, set[str]]:
    """Static imports among the package's modules, function bodies and TYPE_CHECKING blocks included."""
    mods = _modules()
    graph = {m: set() for m in mods}
    for m, f in mods.items():
        is_pkg = f.name == "__init__.py"
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = m.split(".") if is_pkg else m.split(".")[:-1]
                    parts = parts[: len(parts) - (node.level - 1)]
                    base = ".".join(parts + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for n in names:
                while n and n not in mods:
                    n = n.rpartition(".")[0]
                if n and n != m and n != PACKAGE and n.startswith(PACKAGE + "."):
                    graph[m].add(n)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_package_has_no_import_cycles():
    assert _cycles(_import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_spec_layer_imports_no_domain():
    graph = _import_graph()
    layer = {m: deps for m, deps in graph.items() if m.startswith(f"{PACKAGE}.spec")}
    allowed = {f"{PACKAGE}.errors"}  # a leaf: the error types every layer raises
    outside = {m: sorted(d for d in deps if not d.startswith(f"{PACKAGE}.spec") and d not in allowed)
               for m, deps in layer.items()}
    assert {m: d for m, d in outside.items() if d} == {}


def test_the_domains_import_neither_lmeval_nor_dvc_nor_stages():
    graph = _import_graph()
    for m, deps in graph.items():
        if m.startswith((f"{PACKAGE}.knowledge", f"{PACKAGE}.fewshot")):
            bad = [d for d in deps if d.startswith((f"{PACKAGE}.lmeval", f"{PACKAGE}.stages", f"{PACKAGE}.report"))]
            assert not bad, f"{m} imports {bad}"
            text = _modules()[m].read_text(encoding="utf-8")
            assert not re.search(r"^\s*(import|from)\s+(lm_eval|dvc)\b", text, re.MULTILINE), m


def _stage_modules() -> list[str]:
    return sorted(m for m in _modules() if m.startswith(f"{PACKAGE}.stages.") and m.count(".") == 3
                  and not m.endswith("__init__"))


def test_every_stage_lives_under_its_domain_and_is_short():
    stages = _stage_modules()
    assert stages, "no stage modules found"
    for m in stages:
        assert m.split(".")[2] in DOMAINS, m
        lines = len(_modules()[m].read_text(encoding="utf-8").splitlines())
        assert lines <= MAX_STAGE_LINES, f"{m}: {lines} lines"
    top = [m for m in _modules() if m.startswith(f"{PACKAGE}.stages.") and m.count(".") == 2]
    assert sorted(top) == sorted([f"{PACKAGE}.stages.{d}" for d in DOMAINS] + [f"{PACKAGE}.stages.helpers"])


def test_no_stage_imports_another_stage():
    graph = _import_graph()
    stages = set(_stage_modules())
    for m in stages:
        assert not (graph[m] & stages), f"{m} imports {sorted(graph[m] & stages)}"


def test_the_engine_config_is_built_in_one_place():
    sites = []
    for f in sorted(ROOT.rglob("*.py")):
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1):
            if "TrainConfig(" in line and not line.lstrip().startswith("class "):
                sites.append(f"{f.relative_to(REPO)}:{i}")
    assert len(sites) == 1 and sites[0].startswith("seal_repro/engine.py"), sites


# -- DVC dependencies ------------------------------------------------------------------------------------------
def _dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO / "dvc.yaml").read_text(encoding="utf-8"))["stages"]


def _stage_module(cmd: str) -> str:
    m = re.search(r"python -m (seal_repro\.stages\.[\w.]+)", cmd)
    assert m, cmd
    return m.group(1)


def _covers(deps: list[str], path: Path) -> bool:
    rel = path.relative_to(REPO).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("name", sorted(_dvc_stages()))
def test_every_stage_depends_on_every_file_it_runs(name):
    stage = _dvc_stages()[name]
    deps = [d if isinstance(d, str) else next(iter(d)) for d in stage.get("deps", [])]
    missing = [f.relative_to(REPO).as_posix() for f in closure([_stage_module(stage["cmd"])]) if not _covers(deps, f)]
    assert missing == [], f"dvc.yaml stage {name} runs these files but does not list them (or a folder) in deps"


def test_the_dependency_check_can_fail():
    fake = closure([f"{PACKAGE}.batching"])
    assert not all(_covers(["seal_repro/engine.py"], f) for f in fake)
    assert all(_covers(["seal_repro"], f) for f in fake)
