"""Stage prepare_model: a loadable model folder (the embedded GGUF converted once to safetensors)."""

from __future__ import annotations

from pathlib import Path

from seal_repro import models
from seal_repro.stages._common import load_resolved, stage_main


def add_args(p):
    p.add_argument("--spec-dir", required=True)
    p.add_argument("--out", required=True, help="model folder to write")


def run(args):
    spec = load_resolved(args.spec_dir)
    out = models.prepare(spec.model, Path(args.out))
    print(f"model {spec.model.name} -> {out}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
