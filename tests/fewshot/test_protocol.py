"""docs/PROTOCOL.md's few-shot table is the paper spec: every row is checked against the resolved spec.

The `## Few-shot ARC` part names its spec (`Spec: \\`specs/fewshot/….yaml\\``) and holds one table whose columns are:
setting · reference value · where the reference sets it · spec key · paper spec value · match · note. A row with a
spec key must resolve to its paper spec value (a JSON literal, in single or, when it holds a backtick, double
backticks); a `=` row's reference value (a JSON literal first in its cell) must equal it, a `≠` row's must differ
when it gives one; a `—` row must explain itself in its note. The stated count of explained mismatches must be the
number of `≠` rows, and every cited reference line must exist in the reference repository when its mirror is here.
Two rows rest on facts about the paper's tasks, checked here too: every query is short enough for the reference's
token filter, and every answer fits `evaluation.max_new_tokens`.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from seal_repro.lmeval import TASKS_DIR
from seal_repro.spec import load_spec
from protocol_tables import task_yaml, walk

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "PROTOCOL.md"
MIRROR = Path(os.environ.get("SEAL_REFERENCE_REPO", "/work/.mirror/Continual-Intelligence+SEAL/repo"))
COLUMNS = ["setting", "reference value", "where the reference sets it", "spec key", "paper spec value", "match", "note"]


def _cells(line: str) -> list[str]:
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def _part(text: str) -> str:
    return text[text.index("\n## Few-shot ARC\n"):]


def parse(text: str) -> tuple[str, list[dict]]:
    part = _part(text)
    m = re.search(r"^Spec: `([^`]+)`", part, re.MULTILINE)
    assert m, "the few-shot part names its spec"
    lines = [ln for ln in part.splitlines() if ln.startswith("|")]
    assert _cells(lines[0]) == COLUMNS, _cells(lines[0])
    rows = []
    for line in lines[2:]:
        cells = _cells(line)
        assert len(cells) == len(COLUMNS), f"a row has {len(cells)} cells: {line[:80]}"
        rows.append(dict(zip(COLUMNS, cells)))
    return m.group(1), rows


SPEC, ROWS = parse(DOC.read_text(encoding="utf-8"))


def _literal(cell: str):
    """(found, value): the JSON literal a cell starts with, in `…` or ``…``."""
    m = re.match(r"``(.+?)``(?!`)", cell) or re.match(r"`([^`]*)`", cell)
    return (True, json.loads(m.group(1))) if m else (False, None)


def _task_yaml() -> dict:
    return task_yaml(TASKS_DIR / "seal_arc" / "seal_arc.yaml")


def resolve(key: str, spec_json: dict):
    if key.startswith("task:"):
        return walk(_task_yaml(), key[len("task:"):])
    if key.startswith("const:"):
        module, name = key[len("const:"):].rsplit(".", 1)
        return getattr(importlib.import_module(module), name)
    return walk(spec_json, key)


@pytest.fixture(scope="module")
def resolved() -> dict:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        return load_spec(REPO / SPEC).model_dump(mode="json")


def test_the_table_covers_the_paper_spec():
    assert SPEC == "specs/fewshot/paper-llama-3.2-1b.yaml"
    on_disk = sorted(str(p.relative_to(REPO)) for p in (REPO / "specs" / "fewshot").glob("paper-*.yaml"))
    assert on_disk == [SPEC] and len(ROWS) >= 60
    keys = {r["spec key"].strip("`") for r in ROWS}
    for option in ("evaluation.prompt_format", "evaluation.voting", "self_edit.json_format", "self_edit.system",
                   "self_edit.resample.max_tries", "self_edit.decoding", "inner_loop.augmentations",
                   "inner_loop.step_limit_rule", "inner_loop.warmup_steps", "rl.ttt_on_policy",
                   "rl.sft.lora.target_modules", "rl.sft.lr_schedule"):
        assert option in keys, f"no row for {option}"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["setting"])
def test_row_matches_the_resolved_spec(row, resolved):
    assert row["match"] in ("=", "≠"), f"match must be = or ≠, not {row['match']!r}"
    assert row["setting"] and row["where the reference sets it"], "setting and source are required"
    key = row["spec key"]
    if key == "`—`":
        assert len(row["note"]) > 40 and row["paper spec value"] == "—", "a `—` row explains itself"
        return
    key = re.fullmatch(r"`([^`]+)`", key).group(1)
    found, expected = _literal(row["paper spec value"])
    assert found and row["paper spec value"].rstrip("`").lstrip("`") != "", "the paper spec value is a JSON literal"
    actual = resolve(key, resolved)
    assert actual == expected, f"{key}: the spec resolves to {actual!r}, the table says {expected!r}"
    has_ref, reference = _literal(row["reference value"])
    if row["match"] == "=":
        assert has_ref and reference == actual, f"{key}: marked = but the reference value is {reference!r}"
    else:
        assert not has_ref or reference != actual, f"{key}: marked ≠ but the values agree"
        assert len(row["note"]) > 40, "a mismatch is explained in its note"


def test_the_stated_mismatch_count_is_the_number_of_mismatch_rows():
    m = re.search(r"Explained mismatches: \*\*(\d+)\*\*", _part(DOC.read_text(encoding="utf-8")))
    assert m and int(m.group(1)) == sum(r["match"] == "≠" for r in ROWS)


LINES = re.compile(r"(?<![\w/.-])((?:[\w-]+/)*[\w.-]+\.(?:py|sh|md)):(\d+(?:-\d+)?(?:,\d+(?:-\d+)?)*)")


def test_cited_reference_lines_exist():
    if not MIRROR.is_dir():
        pytest.skip("the reference repository's mirror is not on this machine")
    lengths, problems = {}, []
    for row in ROWS:
        cites = LINES.findall(row["where the reference sets it"])
        files = re.findall(r"(?<![\w/.-])((?:[\w-]+/)*[\w.-]+\.(?:py|sh|md|json))\b", row["where the reference sets it"])
        assert files, f"{row['setting']}: no source file"
        for path in set(files) | {p for p, _ in cites}:
            if path not in lengths:
                proc = subprocess.run(["git", "-C", str(MIRROR), "show", f"HEAD:few-shot/{path}"], capture_output=True,
                                      text=True)
                lengths[path] = len(proc.stdout.splitlines()) if proc.returncode == 0 else None
            if lengths[path] is None:
                problems.append(f"{row['setting']}: {path} is not in the reference's few-shot/")
        for path, spans in cites:
            last = max(int(n) for n in re.findall(r"\d+", spans))
            if lengths.get(path) is not None and last > lengths[path]:
                problems.append(f"{row['setting']}: {path}:{spans} is past its {lengths[path]} lines")
    assert not problems, "\n".join(problems)


def test_the_paper_tasks_fit_the_reference_limits(resolved):
    """The rows 'query length filter' and 'answer length cap': a token is at least one character, so every query of
    the paper's tasks (system + user + answer, 200 characters left for the chat template's framing) under 8192
    characters passes the reference's < 8192-token filter, and every answer under max_new_tokens characters fits."""
    from seal_repro.fewshot.formats import format_of
    from seal_repro.fewshot.tasks import load_task_sets
    from seal_repro.fewshot.vote import queries

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        spec = load_spec(REPO / SPEC)
    fmt = format_of(spec)
    longest_query = longest_answer = 0
    for task in [t for ts in load_task_sets(spec.tasks, REPO) for t in ts]:
        for k in range(len(task.test)):
            for q in queries(task, k, spec):
                answer = len(fmt.completion(q.target))
                longest_answer = max(longest_answer, answer)
                longest_query = max(longest_query, len(q.prompt.system) + len(q.prompt.user) + answer)
    assert longest_query < 8192 - 200
    assert longest_answer < spec.evaluation.max_new_tokens


def test_a_changed_spec_value_or_table_cell_fails(resolved):
    text = DOC.read_text(encoding="utf-8")
    row = "| `inner_loop.warmup_steps` | `11` | = |"
    assert row in text
    _, rows = parse(text.replace(row, row.replace("`11`", "`12`"), 1))
    changed = next(r for r in rows if r["spec key"] == "`inner_loop.warmup_steps`")
    assert resolve("inner_loop.warmup_steps", resolved) != _literal(changed["paper spec value"])[1]
