"""`seal-repro bench BENCHMARK`: measurements of the toolkit itself (speed, FLOP/s, memory), one per sub-command.

Each benchmark lives in its own module under seal_repro/bench/ and registers itself: the module defines
`register(subparsers)`, which adds its parser to the `bench` sub-parsers and sets `func=callable(args) -> int`.
To add one, write the module and append its import path to BENCHMARKS below (nothing else changes). Modules are
imported when the parser is built, so they must import torch & co. inside their functions, not at the top.
"""

from __future__ import annotations

import argparse
import importlib

# Benchmark modules, in the order `seal-repro bench --help` lists them.
BENCHMARKS: list[str] = [
    "seal_repro.bench.inner_loop",  # seal-repro bench inner-loop
    "seal_repro.bench.ray_scaling",  # seal-repro bench ray
    "seal_repro.bench.gpu",  # seal-repro bench gpu
    "seal_repro.bench.numerics",  # seal-repro bench numerics
]


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="benchmark the toolkit (e.g. the inner loop against the reference protocol)",
        description=(
            "Benchmarks of the toolkit itself. Each prints `name=value` lines on stdout (logs on stderr). "
            "Run `seal-repro bench BENCHMARK --help` for what a benchmark measures and prints."
        ),
    )
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    for module in BENCHMARKS:
        importlib.import_module(module).register(sub)
    parser.set_defaults(func=lambda args: _usage(parser))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
