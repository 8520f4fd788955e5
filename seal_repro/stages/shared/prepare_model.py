"""Stage prepare_model: a loadable model folder (the embedded GGUF converted once to safetensors; a hub or
local model: a pointer to it), and the self-edit writer's in its `writer/` sub-folder when the spec names one."""

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
    writer = getattr(spec.self_edit, "writer", None)
    if writer is not None:  # teacher–student: the self-edit writer's folder, inside the student's
        folder = models.prepare_writer(writer, spec.model, out)
        print(f"self-edit writer {writer.name} -> {folder}")


if __name__ == "__main__":
    stage_main(__doc__, add_args, run)
