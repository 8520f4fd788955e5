"""`seal-repro validate`: check spec files without running anything (exit 2 if any is invalid)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from seal_repro.errors import UserError
from seal_repro.spec.loader import load_spec, one_line, spec_hash

SPEC_SUFFIXES = (".yaml", ".yml")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check spec files; exit 2 if any is invalid",
        description=(
            "Load and validate spec files (includes merged, every field checked, every path the spec names checked "
            "to exist and to be what its key reads). Prints `ok  PATH  (hash ...)` for each good file on stdout and "
            "one `FILE: key.path: message` line per problem on stderr; a problem in an included file names that "
            "file and the spec that included it. Exit code 0 when all are valid, 2 otherwise."
        ),
    )
    parser.add_argument(
        "paths", nargs="*", default=["specs"], metavar="PATH",
        help="spec files, or folders searched recursively for *.yaml / *.yml (default: specs)",
    )
    parser.add_argument(
        "--check-paths", action=argparse.BooleanOptionalAction, default=True,
        help="require the files and folders a spec names (every path key: model.path, data.path, "
             "data.teacher_path, rl.train_data.path, tasks.*.ids_file, the semantic grader's model, ...) to exist "
             "now and to be what the key reads (a local model: config.json and safetensors weights); on by default, "
             "--no-check-paths to check a spec written for another machine",
    )
    parser.add_argument(
        "--section", metavar="KEY",
        help="read each spec under this top-level key (e.g. `knowledge` for DVC's params.yaml)",
    )
    parser.set_defaults(func=run)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def spec_files(paths: list[str]) -> tuple[list[Path], list[str]]:
    """(files to validate, problems): folders expand to their YAML files; hidden folders are skipped."""
    files: list[Path] = []
    problems: list[str] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            files.append(path)  # a missing file is reported by the loader like any other problem
            continue
        found = sorted(
            f for f in path.rglob("*")
            if f.suffix in SPEC_SUFFIXES and f.is_file() and not _hidden(f.relative_to(path))
        )
        if not found:
            problems.append(f"{path}: no *.yaml or *.yml files in this folder")
        files += found
    return files, problems


def run(args: argparse.Namespace) -> int:
    files, problems = spec_files(args.paths)
    for line in problems:
        print(one_line(line), file=sys.stderr)
    failed = bool(problems)
    for path in files:
        try:
            spec = load_spec(path, args.section, check_paths=args.check_paths)
        except UserError as err:
            failed = True
            for line in err.lines:
                print(one_line(line), file=sys.stderr)
            continue
        print(one_line(f"ok  {path}  (hash {spec_hash(spec)[:12]}…)"))
    return 2 if failed else 0
