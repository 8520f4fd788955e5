"""The `seal-repro` command line: one sub-command per module, each module registering itself.

Every user error (bad spec, bad data, bad argument) ends in one line per problem on stderr
and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from seal_repro import __version__
from seal_repro.errors import UserError
from seal_repro.io import as_disk_full

# (module, what it does). Each module defines `register(subparsers)` which adds its parser and
# sets `func=callable(args) -> int`. Imported lazily so `--help` does not load torch.
COMMANDS: list[tuple[str, str]] = [
    ("seal_repro.commands.validate", "validate"),
    ("seal_repro.commands.show", "show"),
    ("seal_repro.commands.plan", "plan"),
    ("seal_repro.commands.run", "run"),
    ("seal_repro.commands.compare", "compare"),
    ("seal_repro.commands.replay", "replay"),
    ("seal_repro.commands.calibrate_grader", "calibrate-grader"),
    ("seal_repro.commands.bench", "bench"),
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="seal-repro",
        description=(
            "Reproduce, ablate and extend SEAL (Self-Adapting Language Models). Experiments are YAML specs "
            "under specs/; `dvc repro` runs the pipeline in dvc.yaml. Exit code 2 means bad input."
        ),
    )
    parser.add_argument("--version", action="version", version=f"seal-repro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module, _name in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as err:
        for line in err.lines:
            print(line, file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # a full disk, whichever library was writing: one line, exit 1 (else a real bug)
        full = as_disk_full(err)
        if full is None:
            raise
        print(full.lines[0], file=sys.stderr)
        return full.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
