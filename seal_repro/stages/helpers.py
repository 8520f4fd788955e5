"""What every stage shares: argument parsing, loading the resolved spec, turning user errors into exit 2, the
CPU thread budget, the memo switch, and the marker a stage leaves when the spec does not ask for it."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import yaml

from seal_repro.cpu import tune_allocator
from seal_repro.errors import UserError
from seal_repro.executor import thread_budget
from seal_repro.io import as_disk_full, write_json, write_jsonl
from seal_repro.memo import Memo
from seal_repro.spec import SPEC_MODELS

RESOLVED = "resolved.yaml"
WRITER_FILE = "writer.yaml"  # self_edit.writer alone (resolve_spec), what prepare_model reads besides model.yaml


def load_resolved(spec_dir: str | Path):
    """The spec written by resolve_spec (paths already rebased), validated again into its typed model."""
    path = Path(spec_dir) / RESOLVED
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return SPEC_MODELS[data["domain"]].model_validate(data)


def stage_main(description: str, add_args: Callable[[argparse.ArgumentParser], None], run: Callable) -> None:
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_args(parser)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        code = run(args) or 0
    except UserError as err:
        for line in err.lines:
            print(line, file=sys.stderr)
        code = err.exit_code
    except Exception as err:  # a full disk, whichever library was writing (PEFT, safetensors): one line, exit 1
        full = as_disk_full(err)
        if full is None:
            raise
        print(full.lines[0], file=sys.stderr)
        code = full.exit_code
    sys.exit(code)


def add_common(p: argparse.ArgumentParser, *, model: bool = True, memo: bool = True) -> None:
    """--spec-dir (and --model, --no-memo): the arguments of every stage that loads a model."""
    p.add_argument("--spec-dir", required=True, help="folder written by resolve_spec")
    if model:
        p.add_argument("--model", required=True, help="folder written by prepare_model")
    if memo:
        p.add_argument("--no-memo", action="store_true", help="recompute everything even if memoized")


def memo_of(args) -> Memo:
    return Memo(enabled=not getattr(args, "no_memo", False))


def set_threads() -> None:
    """torch's thread budget for this stage, and the CPU allocator settings training wants (seal_repro/cpu.py)."""
    import torch  # heavy: only the stages that compute import it

    torch.set_num_threads(thread_budget())
    tune_allocator()


def write_skipped(out: Path, reason: str, summary: dict | None = None, jsonl: tuple[str, ...] = ("records.jsonl",)) -> None:
    """The marker a stage leaves when the spec does not ask for it: empty record files and a summary saying so,
    so downstream stages and DVC see the same outputs whether or not the stage ran."""
    for name in jsonl:
        write_jsonl(Path(out) / name, [])
    write_json(Path(out) / "summary.json", {**(summary or {}), "skipped": True})
    print(f"{reason}, skipped")
