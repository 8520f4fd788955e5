"""`seal-repro run SPEC`: run a knowledge spec's stages outside DVC, into a folder of its own.

The same stages, in the same order, as `dvc.yaml`'s knowledge pipeline: the baseline conditions, then (when the
spec has the sections) ReST-EM iterations with the SEAL condition after each, continued pretraining and
continual self-edits, then the report. Stages whose section is absent write a marker only.

For one-off specs and ablations that should not replace the pipeline's workspace results: everything goes
under `--out` (default `runs/<spec file stem>-<spec hash[:8]>/`), so results of different specs never overwrite
each other: a folder holding another spec's results is refused.
Inner-loop rounds shared with earlier runs come from the memo.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from seal_repro import models, provenance
from seal_repro.errors import UserError
from seal_repro.spec import load_spec
from seal_repro.stages.helpers import set_threads


def register(sub) -> None:
    p = sub.add_parser("run", help="run a knowledge spec's stages outside DVC into runs/<spec>/", description=__doc__)
    p.add_argument("spec", help="spec file (YAML)")
    p.add_argument("--out", default=None, help="output folder (default runs/<spec file stem>-<spec hash[:8]>); "
                   "refused if it holds another spec's results")
    p.add_argument("--model-dir", default=None,
                   help="an already prepared model folder to reuse (e.g. build/models/knowledge) instead of preparing one")
    p.set_defaults(func=run)


def _stage(module: str, **kwargs) -> None:
    """Run stage `seal_repro.stages.<module>` in this process, with `kwargs` as its command-line arguments."""
    mod = importlib.import_module(f"seal_repro.stages.{module}")
    parser = argparse.ArgumentParser()
    mod.add_args(parser)
    argv = []
    for key, value in kwargs.items():
        argv += [f"--{key.replace('_', '-')}", str(value)]
    mod.run(parser.parse_args(argv))


def _with_writer(model_dir: Path, spec, out: Path) -> Path:
    """A model folder for a teacher–student spec run with --model-dir: links to the prepared student's files (no
    copy; they fingerprint as the files themselves) and the writer prepared in its `writer/` sub-folder."""
    out.mkdir(parents=True, exist_ok=True)
    for f in Path(model_dir).iterdir():
        link = out / f.name
        if f.is_file() and not link.exists():
            link.symlink_to(f.resolve())
    models.prepare_writer(spec.self_edit.writer, spec.model, out)
    return out


def run(args) -> int:
    spec = load_spec(args.spec)  # validate first: a bad spec costs nothing
    if spec.domain != "knowledge":
        raise UserError(f"{args.spec}: domain: `seal-repro run` runs knowledge specs; use dvc for {spec.domain!r}")
    set_threads()
    out = provenance.run_folder(args.spec, spec, args.out)  # refuses a folder holding another spec's results
    b = out / "build"
    spec_dir = b / "spec"
    _stage("shared.resolve_spec", params=args.spec, out=spec_dir)
    # Every data file is read and checked before any model is loaded: a bad record costs seconds, not a run.
    _stage("knowledge.prepare_data", spec_dir=spec_dir, out=b / "data")
    model = Path(args.model_dir) if args.model_dir else b / "model"
    if not args.model_dir:
        _stage("shared.prepare_model", spec_dir=spec_dir, out=model)
    elif spec.self_edit.writer is not None and not models.writer_dir(model).is_dir():
        model = _with_writer(model, spec, b / "model")
    common = dict(spec_dir=spec_dir, model=model, data=b / "data")
    _stage("knowledge.baselines", **common, out=b / "baselines")
    _stage("knowledge.rl", **common, out=b / "rl")
    _stage("knowledge.cpt", **common, baselines=b / "baselines", rl=b / "rl", out=b / "cpt")
    _stage("knowledge.continual", **common, rl=b / "rl", out=b / "continual")
    calibration = Path("results/calibration/grader_calibration.json")
    kw = {"calibration": calibration} if calibration.exists() else {}
    _stage("knowledge.report", spec_dir=spec_dir, baselines=b / "baselines", rl=b / "rl", cpt=b / "cpt",
           continual=b / "continual", out=out / "results", **kw)
    return 0
