"""`seal-repro run SPEC`: run a knowledge spec's stages outside DVC, into a folder of its own.

The same stages, in the same order, as `dvc.yaml`'s knowledge pipeline: the four baseline conditions, then
(when the spec has the sections) ReST-EM iterations with the SEAL condition after each, continued
pretraining and continual self-edits, then the report. Stages whose section is absent write a marker only.

For one-off specs and ablations that should not replace the pipeline's workspace results: everything goes
under `--out` (default `runs/<spec file stem>-<spec hash[:8]>/`), so results of different specs never overwrite
each other: a folder holding another spec's results is refused.
Inner-loop rounds shared with earlier runs come from the memo.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("run", help="run a knowledge spec's stages outside DVC into runs/<spec>/", description=__doc__)
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--out", default=None, help="output folder (default runs/<spec file stem>-<spec hash[:8]>); "
                   "refused if it holds another spec's results")
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
    from seal_repro import provenance
    from seal_repro.spec import load_spec
    from seal_repro.spec.rl import MAX_RL_ITERATIONS
    from seal_repro.stages._common import set_threads

    spec = load_spec(args.spec)  # validate first: a bad spec costs nothing
    if spec.domain != "knowledge":
        from seal_repro.errors import UserError

        raise UserError(f"{args.spec}: domain: `seal-repro run` runs knowledge specs; use dvc for {spec.domain!r}")
    set_threads()
    out = provenance.run_folder(args.spec, spec, args.out)  # refuses a folder holding another spec's results
    b = out / "build"
    _stage("resolve_spec", params=args.spec, out=b / "spec")
    rl = b / "rl"
    # Every data file is read and checked before any model is loaded: a bad record costs seconds, not a run.
    _stage("prepare_data", spec_dir=b / "spec", out=b / "data")
    _stage("rl_setup", spec_dir=b / "spec", data=b / "data", out=rl / "setup", iter0=rl / "iter0")
    model = Path(args.model_dir) if args.model_dir else b / "model"
    if not args.model_dir:
        _stage("prepare_model", spec_dir=b / "spec", out=model)
    _stage("self_edits", spec_dir=b / "spec", model=model, data=b / "data", out=b / "self_edits")
    for cond in spec.conditions:
        _stage("adapt_eval", spec_dir=b / "spec", model=model, data=b / "data", self_edits=b / "self_edits",
               condition=cond, out=b / "conditions" / cond)
    for k in range(1, MAX_RL_ITERATIONS + 1):  # as in dvc.yaml: iterations past rl.iterations only write a marker
        _stage("rl_iter", spec_dir=b / "spec", model=model, setup=rl / "setup", iteration=k, prev=rl / f"iter{k - 1}",
               out=rl / f"iter{k}")
        _stage("seal_eval", spec_dir=b / "spec", model=model, data=b / "data", policy=rl / f"iter{k}",
               out=b / "conditions" / f"seal_iter{k}")
    _stage("cpt", spec_dir=b / "spec", model=model, data=b / "data", self_edits=b / "self_edits",
           conditions=b / "conditions", out=b / "cpt")
    _stage("continual", spec_dir=b / "spec", model=model, data=b / "data", rl=rl, out=b / "continual")
    calibration = Path("results/calibration/grader_calibration.json")
    kw = {"calibration": calibration} if calibration.exists() else {}
    _stage("report", spec_dir=b / "spec", conditions=b / "conditions", out=out / "results", rl=rl, cpt=b / "cpt",
           continual=b / "continual", **kw)
    return 0
