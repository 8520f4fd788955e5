"""Fixtures for the spec tests: a CLI runner that works before every sub-command module exists."""

from __future__ import annotations

import importlib.util

import pytest

from seal_repro import cli


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run `seal-repro ARGS...` in-process; returns (exit code, stdout, stderr)."""
    # cli.COMMANDS may list modules other engineers have not written yet; register those that exist.
    present = [(mod, name) for mod, name in cli.COMMANDS if importlib.util.find_spec(mod) is not None]
    monkeypatch.setattr(cli, "COMMANDS", present)

    def run(*args: str) -> tuple[int, str, str]:
        code = cli.main([str(a) for a in args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def write(tmp_path):
    """write("a/b.yaml", text) -> the Path, parents created."""

    def _write(name: str, text: str):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    return _write
