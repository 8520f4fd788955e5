"""docs/PROTOCOL.md's knowledge tables are the paper specs: every row is checked against the resolved spec.

Each `### <experiment>` part names its spec (`Spec: \`specs/knowledge/….yaml\``) and holds one table whose columns
are: setting · reference value · where the reference sets it · spec key · paper spec value · match · note. A row
with a spec key must resolve to its paper spec value (a JSON literal); a `=` row's reference value (a JSON literal
first in its cell) must equal it too, and a `≠` row's, when it gives one, must differ; a `—` row (no spec setting)
must explain itself in its note. So changing a spec value, or a value cell of the table, fails here. The stated
count of explained mismatches must be the number of `≠` rows, and every cited reference line must exist in the
reference repository when its mirror is present.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import REPO
from seal_repro.lmeval import TASKS_DIR
from seal_repro.spec import load_spec
from protocol_tables import task_yaml, walk

DOC = REPO / "docs" / "PROTOCOL.md"
# a bare clone of Continual-Intelligence/SEAL (the test that reads it skips when it is absent)
MIRROR = Path(os.environ.get("SEAL_REFERENCE_REPO", "/work/.mirror/Continual-Intelligence+SEAL/repo"))
COLUMNS = ["setting", "reference value", "where the reference sets it", "spec key", "paper spec value", "match", "note"]
EXPERIMENTS = ["Single passage", "ReST-EM", "CPT v1", "CPT v2", "Continual"]


@dataclass(frozen=True)
class Row:
    table: str
    spec: str
    cells: dict

    def __str__(self):
        return f"{self.table}: {self.cells['setting']}"


def _cells(line: str) -> list[str]:
    # a table row: | a | b | … |, where "\|" is a pipe inside a cell
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _knowledge_part(text: str) -> str:
    start = text.index("\n## Knowledge incorporation\n")
    end = text.index("\n## Few-shot ARC\n")
    return text[start:end]


def parse(text: str) -> tuple[dict[str, str], list[Row]]:
    """({experiment: spec file}, every table row) of the knowledge part."""
    specs, rows = {}, []
    for part in re.split(r"\n### ", _knowledge_part(text))[1:]:
        name = part.splitlines()[0].strip()
        m = re.search(r"^Spec: `([^`]+)`", part, re.MULTILINE)
        assert m, f"{name}: no 'Spec: `…`' line"
        specs[name] = m.group(1)
        lines = [ln for ln in part.splitlines() if ln.startswith("|")]
        assert _cells(lines[0]) == COLUMNS, f"{name}: columns {_cells(lines[0])}"
        for line in lines[2:]:
            cells = _cells(line)
            assert len(cells) == len(COLUMNS), f"{name}: a row has {len(cells)} cells: {line[:80]}"
            rows.append(Row(name, m.group(1), dict(zip(COLUMNS, cells))))
    return specs, rows


SPECS, ROWS = parse(DOC.read_text(encoding="utf-8"))


def _json_first(cell: str):
    """The JSON literal a cell starts with (in backticks), or None when it starts with text."""
    m = re.match(r"`([^`]*)`", cell)
    return json.loads(m.group(1)) if m else None


def _key(cell: str) -> str | None:
    if cell == "`—`":
        return None
    m = re.fullmatch(r"`([^`]+)`", cell)
    assert m, f"spec key cell {cell!r} is not one `key`"
    return m.group(1)


def _task_yaml() -> dict:
    return task_yaml(TASKS_DIR / "seal_knowledge" / "seal_knowledge_qa.yaml")


@pytest.fixture(scope="module")
def resolved():
    """{spec file: the resolved spec as JSON values}, resolved from the repository root (paths are relative to it)."""
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        for spec in sorted(set(SPECS.values())):
            out[spec] = load_spec(REPO / spec).model_dump(mode="json")
    return out


def resolve(key: str, spec_json: dict):
    if key.startswith("task:"):
        return walk(_task_yaml(), key[len("task:"):])
    if key.startswith("const:"):
        module, name = key[len("const:"):].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    return walk(spec_json, key)


def test_every_experiment_and_every_paper_spec_has_a_table():
    assert list(SPECS) == EXPERIMENTS
    on_disk = sorted(str(p.relative_to(REPO)) for p in (REPO / "specs" / "knowledge").glob("paper-*.yaml"))
    assert sorted(SPECS.values()) == on_disk
    assert all(sum(r.table == name for r in ROWS) >= 10 for name in EXPERIMENTS)


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_row_matches_the_resolved_spec(row, resolved):
    c = row.cells
    assert c["match"] in ("=", "≠"), f"match must be = or ≠, not {c['match']!r}"
    assert c["setting"] and c["where the reference sets it"], "setting and source are required"
    key = _key(c["spec key"])
    if key is None:  # no spec setting decides it: the note must say what does
        assert len(c["note"]) > 40 and not c["paper spec value"].startswith("`"), "a `—` row explains itself"
        return
    expected = _json_first(c["paper spec value"])
    assert c["paper spec value"] == f"`{c['paper spec value'][1:-1]}`", "the paper spec value is one JSON literal"
    actual = resolve(key, resolved[row.spec])
    assert actual == expected, f"{key}: the spec resolves to {actual!r}, the table says {expected!r}"
    reference = _json_first(c["reference value"])
    if c["match"] == "=":
        assert c["reference value"].startswith("`"), "a = row gives the reference value as a JSON literal"
        assert reference == actual, f"{key}: marked = but the reference value is {reference!r}"
    else:
        assert reference is None or reference != actual, f"{key}: marked ≠ but the values agree"
        assert len(c["note"]) > 40, "a mismatch is explained in its note"


def test_the_stated_mismatch_count_is_the_number_of_mismatch_rows():
    m = re.search(r"Explained mismatches: \*\*(\d+)\*\*", _knowledge_part(DOC.read_text(encoding="utf-8")))
    assert m, "the knowledge part states its count of explained mismatches"
    assert int(m.group(1)) == sum(r.cells["match"] == "≠" for r in ROWS)


def test_every_row_cites_a_source():
    cite = re.compile(r"[\w./{},*-]+\.(py|sh|json|meta|jsonl|yaml)\b|Trainer|paper yaml")
    missing = [str(r) for r in ROWS if not cite.search(r.cells["where the reference sets it"])]
    assert not missing, f"rows without a file:line or released-file source: {missing}"


LINES = re.compile(r"(?<![\w/])((?:src|scripts)/[\w./-]+\.(?:py|sh|json)):(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)")
RELEASED = re.compile(r"(?<![\w/])((?:results|data)/[\w./-]+\.(?:json|meta|jsonl))\b")


def _mirror_file(path: str) -> str | None:
    proc = subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:knowledge-incorporation/{path}"],
                          capture_output=True, text=True)
    return proc.stdout if proc.returncode == 0 else None


def test_cited_reference_lines_and_files_exist():
    """Every `src/…:N` / `scripts/…:N` of a source cell is a line of that file at the reference's HEAD, and every
    released file it names exists (library citations — 'peft v…', 'trl v…' — and the indexed v2 files are not in
    the mirror)."""
    if not MIRROR.is_dir():
        pytest.skip("the reference repository's mirror is not on this machine")
    problems, lengths = [], {}
    for row in ROWS:
        for citation in row.cells["where the reference sets it"].split(";"):
            citation = citation.strip()
            if citation.startswith(("peft ", "trl ", "transformers ")):
                continue
            for path, spans in LINES.findall(citation):
                if path not in lengths:
                    text = _mirror_file(path)
                    lengths[path] = None if text is None else len(text.splitlines())
                if lengths[path] is None:
                    problems.append(f"{row}: {path} is not in the reference")
                    continue
                last = max(int(n) for n in re.findall(r"\d+", spans))
                if last > lengths[path]:
                    problems.append(f"{row}: {path}:{spans} is past its {lengths[path]} lines")
            for path in RELEASED.findall(citation):
                if _mirror_file(path) is None:
                    problems.append(f"{row}: released file {path} is not in the reference")
    assert not problems, "\n".join(problems)


def test_a_changed_spec_value_or_table_cell_fails():
    """The check itself: a table whose cell disagrees with the spec is caught (here: the LoRA targets)."""
    text = DOC.read_text(encoding="utf-8")
    row = '| `inner_loop.lora.target_modules` | `["q_proj", "v_proj"]` | = |'
    assert row in text
    _, rows = parse(text.replace(row, row.replace('["q_proj", "v_proj"]', '["q_proj", "k_proj", "v_proj"]'), 1))
    changed = next(r for r in rows if r.cells["spec key"] == "`inner_loop.lora.target_modules`")
    spec = load_spec(REPO / changed.spec)
    actual = resolve("inner_loop.lora.target_modules", spec.model_dump(mode="json"))
    assert actual != _json_first(changed.cells["paper spec value"])
