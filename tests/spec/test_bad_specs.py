"""Every file under bad_specs/ must fail `seal-repro validate` cleanly: exit 2, one `FILE: ...` line per
problem, the expected message, no traceback and nothing written. Text files state their expected
message in a first `# expect:` comment; the few that cannot hold a comment are listed here."""

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


def _expected(path: Path) -> str:
    if path.name in NO_COMMENT:
        return NO_COMMENT[path.name]
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect: ")


def test_corpus_is_large_enough():
    assert len(CASES) >= 40


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
    shape = re.compile(rf"^{re.escape(str(path))}: ([\w.\[\]]+: .+|.+)$")
    for line in lines:
        assert shape.match(line), line
    assert _expected(path) in err
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in BAD.iterdir()) == before


def test_all_errors_reported_at_once(run_cli):
    code, _, err = run_cli("validate", BAD / "many_errors.yaml")
    assert code == 2
    keys = {line.split(": ")[1] for line in err.splitlines()}
    assert keys == {"seed", "model.dtype", "inner_loop.lr", "bogus"}


def test_whole_corpus_in_one_run(run_cli):
    code, out, err = run_cli("validate", BAD)
    assert code == 2 and out == ""
    files = {line.split(": ")[0] for line in err.splitlines()}
    assert files == {str(p) for p in CASES}
