"""Every file under bad_specs/ must fail `seal-repro validate` cleanly: exit 2, one `FILE: ...` line per
problem, the expected message, no traceback and nothing written. Text files state their expected
message in a first `# expect:` comment; the few that cannot hold a comment are listed here.

bad_specs/.includes/ holds files that cases include (a hidden folder, so `validate bad_specs/` skips it);
an error found in such a file is reported against that file and names the case that included it:
`.includes/bad_lora.yaml (included by include_error_in_included_file.yaml): inner_loop.lora.rnak: unknown key`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

BAD = Path(__file__).parent / "bad_specs"
NO_COMMENT = {  # files whose bytes are the point: empty, binary, wrongly encoded
    "empty.yaml": "empty file",
    "binary_nul.yaml": "binary file (contains NUL bytes)",
    "latin1.yaml": "not UTF-8 text (byte 0xe9",
    "utf16.yaml": "binary file",
}
CASES = sorted(BAD.glob("*.yaml"))
INCLUDED = BAD / ".includes"

# Every category of the issue, by file-name prefix: a category without a case fails the test below.
CATEGORIES = {
    "YAML syntax": ("syntax_",),
    "non-mapping top level": ("top_level_", "multi_document", "only_comments"),
    "empty file": ("empty",),
    "binary or non-UTF-8 bytes": ("binary_", "latin1", "utf16"),
    "unknown keys": ("unknown_",),
    "wrong types": ("type_",),
    "out-of-range values": ("range_", "fewshot_range_"),
    "invalid choices": ("literal_", "conditions_unknown", "fewshot_conditions_unknown", "domain_unknown"),
    "missing includes": ("include_missing", "include_folder"),
    "cyclic includes": ("include_self", "include_cycle_"),
    "duplicate keys": ("dup_keys_",),
    "YAML python tags": ("python_tag_",),
    "cross-field: lora alpha without rank": ("lora_alpha_without_rank", "fewshot_lora_alpha_without_rank"),
    "cross-field: training split overlaps the evaluation split": (
        "rl_overlaps_eval", "rl_same_file_overlaps_eval", "fewshot_tasks_overlap", "fewshot_same_split_by_n"),
    "cross-field: other": ("rl_", "cpt_", "continual_", "fewshot_", "hf_", "local_", "embedded_", "fictional_",
                           "custom_", "template_"),
}
# At least this many distinct unknown-key levels (top, model, data, inner_loop, lora, rl.sft, cpt, fewshot...).
MIN_UNKNOWN_KEY_CASES = 15


def _expected(path: Path) -> str:
    if path.name in NO_COMMENT:
        return NO_COMMENT[path.name]
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


@pytest.mark.parametrize("category", CATEGORIES)
def test_every_category_has_cases(category):
    assert [p for p in CASES if p.stem.startswith(CATEGORIES[category])], f"no case for {category}"


def test_unknown_keys_at_every_level():
    assert len([p for p in CASES if p.stem.startswith("unknown_")]) >= MIN_UNKNOWN_KEY_CASES


@pytest.mark.parametrize("path", CASES, ids=lambda p: p.stem)
def test_bad_spec_fails_cleanly(path, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a python tag that ran would write pwned.txt here
    before = sorted(p.name for p in BAD.iterdir())
    code, out, err = run_cli("validate", path)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines
    helpers = "|".join(re.escape(str(f)) for f in INCLUDED.glob("*.yaml"))
    files = rf"{re.escape(str(path))}|({helpers}) \(included by {re.escape(str(path))}\)"
    shape = re.compile(rf"^({files}): ([\w.\[\]]+: .+|.+)$")
    for line in lines:
        assert shape.match(line), line  # every line names the case asked about, even for a problem in a helper
    assert len(lines) == len(set(lines))  # each problem once
    assert _expected(path) in err
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in BAD.iterdir()) == before


def test_all_errors_reported_at_once(run_cli):
    code, _, err = run_cli("validate", BAD / "many_errors.yaml")
    assert code == 2
    keys = {line.split(": ")[1] for line in err.splitlines()}
    assert keys == {"seed", "model.dtype", "inner_loop.lr", "bogus"}


INCLUDED_BY = re.compile(r"^(?P<file>.+?)(?: \(included by (?P<by>.+?)(?:, from (?P<top>.+?))?\))?: ")


def test_whole_corpus_in_one_run(run_cli):
    code, out, err = run_cli("validate", BAD)
    assert code == 2 and out == ""
    named = [INCLUDED_BY.match(line) for line in err.splitlines()]
    helpers = {str(p) for p in INCLUDED.glob("*.yaml")}
    assert {m["file"] for m in named} <= {str(p) for p in CASES} | helpers  # the helpers are not validated (hidden)
    # every case is named: directly, or as the spec that included the file with the problem
    assert {m["top"] or m["by"] or m["file"] for m in named} == {str(p) for p in CASES}


def test_cross_field_problems_are_one_line_each(run_cli):
    path = BAD / "cross_field_several_at_once.yaml"
    code, _, err = run_cli("validate", path)
    assert code == 2
    assert err.splitlines() == [
        f"{path}: cpt.conditions: lists 'seal' but the spec has no rl section to train the SEAL policy",
        f"{path}: continual.start: is 'seal' but the spec has no rl section to train the SEAL policy",
    ]


def test_fewshot_inner_loop_problems_are_one_line_each(run_cli):
    path = BAD / "fewshot_inner_loop_above_self_edit_max.yaml"
    code, _, err = run_cli("validate", path)
    assert code == 2
    assert err.splitlines() == [
        f"{path}: inner_loop.lr: 0.05 is above 0.01, the most a self-edit may choose",
        f"{path}: inner_loop.epochs: 11 is above 10, the most a self-edit may choose",
    ]


def test_error_in_an_included_file_names_that_file_and_the_spec(run_cli):
    top = BAD / "include_error_in_included_file.yaml"
    code, _, err = run_cli("validate", top)
    assert code == 2
    assert err.startswith(f"{INCLUDED / 'bad_lora.yaml'} (included by {top}): inner_loop.lora.rnak: unknown key")


def test_include_chain_names_the_includer_and_the_spec(run_cli, write):
    lora = write("lib/lora.yaml", "inner_loop: {lora: {rank: 0}}\n")
    base = write("lib/base.yaml", "include: lora.yaml\n")
    top = write("top.yaml", "domain: knowledge\nmodel: {chat_template: false}\ninclude: lib/base.yaml\n")
    code, _, err = run_cli("validate", top)
    assert code == 2
    assert err == (f"{lora} (included by {base}, from {top}): inner_loop.lora.rank: "
                   "Input should be greater than 0\n")
