"""Benchmarks behind `seal-repro bench ...`: measure the toolkit against the reference protocol it replaces.

Each benchmark is one module with a `register(subparsers)` hook (listed in `seal_repro/commands/bench.py`)
and prints `name=value` lines on stdout, one per line, so a script can parse them:

- `inner_loop` — one SEAL inner-loop round (train a LoRA on a passage's sequences, answer its questions),
  done by `LoraEngine` and by a re-implementation of the reference protocol (`reference`), side by side;
- `ray_scaling` — `seal-repro bench ray`: inner-loop rounds/s on Ray workers;
- `measure` — shared helpers: dense-matmul FLOP/s, generation throughput, peak memory, synchronised timing.

Modules import torch lazily so `seal-repro --help` stays fast.
"""
