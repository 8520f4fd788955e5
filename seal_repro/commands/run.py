"""`seal-repro run SPEC`: run a knowledge spec's stages outside DVC, into a folder of its own.

For one-off specs and ablations that should not replace the pipeline's workspace results: everything goes
under `--out` (default `runs/<spec file stem>/`), so results of different specs never overwrite each other.
Inner-loop rounds shared with earlier runs come from the memo.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("run", help="run a knowledge spec's stages outside DVC into runs/<spec>/", description=__doc__)
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--out", default=None, help="output folder (default runs/<spec file stem>)")
    p.add_argument("--model-dir", default=None,
                   help="an already prepared model folder to reuse (e.g. build/models/knowledge) instead of preparing one")
    p.set_defaults(func=run)


def _stage(module: str, **kwargs) -> None:
    import importlib

    mod = importlib.import_module(f"seal_repro.stages.{module}")
    parser = argparse.ArgumentParser()
    mod.add_args(parser)
    argv = []
    for key, value in kwargs.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    mod.run(parser.parse_args(argv))


def run(args) -> int:
    from seal_repro.spec import load_spec
    from seal_repro.stages._common import set_threads

    spec = load_spec(args.spec)  # validate first: a bad spec costs nothing
    if spec.domain != "knowledge":
        from seal_repro.errors import UserError

        raise UserError(f"{args.spec}: domain: `seal-repro run` runs knowledge specs; use dvc for {spec.domain!r}")
    set_threads()
    out = Path(args.out or Path("runs") / Path(args.spec).stem)
    b = out / "build"
    _stage("resolve_spec", params=args.spec, out=b / "spec")
    model = Path(args.model_dir) if args.model_dir else b / "model"
    if not args.model_dir:
        _stage("prepare_model", spec_dir=b / "spec", out=model)
    _stage("prepare_data", spec_dir=b / "spec", out=b / "data")
    _stage("self_edits", spec_dir=b / "spec", model=model, data=b / "data", out=b / "self_edits")
    for cond in spec.conditions:
        _stage("adapt_eval", spec_dir=b / "spec", model=model, data=b / "data", self_edits=b / "self_edits",
               condition=cond, out=b / "conditions" / cond)
    calibration = Path("results/calibration/grader_calibration.json")
    kw = {"calibration": calibration} if calibration.exists() else {}
    _stage("report", spec_dir=b / "spec", conditions=b / "conditions", out=out / "results", **kw)
    return 0
