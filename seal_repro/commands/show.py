"""`seal-repro show`: print a spec fully resolved (includes merged, defaults filled in) with its hash."""

from __future__ import annotations

import argparse
import sys

from seal_repro.spec.loader import dump_spec_yaml, load_spec, spec_hash


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "show",
        help="print a spec fully resolved, as YAML",
        description=(
            "Print the spec exactly as a run sees it: includes merged, every default filled in, relative paths "
            "rebased onto the current folder. The first line is a comment holding the spec hash, which names "
            "the run's outputs. Exit code 2 if the spec is invalid."
        ),
    )
    parser.add_argument("spec", metavar="SPEC", help="the spec file (YAML)")
    parser.add_argument(
        "--section", metavar="KEY",
        help="read the spec under this top-level key (e.g. `knowledge` for DVC's params.yaml)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec, args.section)
    sys.stdout.write(f"# spec_hash: {spec_hash(spec)}\n{dump_spec_yaml(spec)}")
    return 0
