"""Stage prepare_model: a loadable model folder (the embedded GGUF converted once to safetensors; a hub or
local model: a pointer to it)."""

from __future__ import annotations

from pathlib import Path

from seal_repro import models
from seal_repro.stages.helpers import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True, help="folder written by resolve_spec")
    p.add_argument("--out", required=True, help="model folder to write")


def run(args):
    spec = load_resolved(args.spec_dir)
    out = models.prepare(spec.model, Path(args.out))
    print(f"model {spec.model.name} -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
