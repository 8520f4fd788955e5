"""`seal-repro bench ray`: inner-loop rounds/s on Ray with 1 worker vs 2 workers, one torch thread each.

The same rounds (teacher self-edits of the spec's first passages, each repeated with its own seed) run twice,
memo disabled: once on a pool of one Ray worker, once on two. Each pool is started and has loaded the model
before the clock starts, so the numbers are steady-state throughput; start-up is reported on its own line.
The two runs' records must be identical (each round's seed comes from its content), which is checked too.

Prints `name=value` lines ending with `ray_speedup_2_vs_1_workers=<x>`. On a shared machine the speedup is
bounded by the idle cores: check the load average.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DEFAULT_SPEC = "specs/knowledge/default.yaml"
DEFAULT_MODEL_DIR = "build/models/knowledge"


def register(sub) -> None:
    p = sub.add_parser("ray", help="inner-loop rounds/s on Ray: 1 worker vs 2 workers (one thread each)",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", default=DEFAULT_SPEC, help=f"knowledge spec whose inner loop to run (default {DEFAULT_SPEC})")
    p.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                   help=f"prepared model folder (default {DEFAULT_MODEL_DIR}, written by prepare_model)")
    p.add_argument("--passages", type=int, default=2, help="passages whose teacher self-edit is trained on (default 2)")
    p.add_argument("--repeats", type=int, default=2, help="rounds per passage, each with its own seed (default 2)")
    p.add_argument("--epochs", type=int, default=None, help="override inner_loop.epochs (shorter rounds, quicker bench)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")
    p.add_argument("--gpus-per-worker", type=float, default=0.0, help="GPUs per worker (default 0: CPU)")
    p.add_argument("--address", default=None, help="an existing Ray cluster (default: start a local instance)")
    p.set_defaults(func=run)


def _emit(name: str, value) -> None:
    if isinstance(value, float):
        value = f"{value:.4g}"
    print(f"{name}={value}", flush=True)


def run(args) -> int:
    from seal_repro.errors import UserError
    from seal_repro.executor import RayExecutor, _import_ray
    from seal_repro.io import write_jsonl
    from seal_repro.knowledge.inner_loop import KitRecipe, plan_rounds, run_rounds
    from seal_repro.lmeval.knowledge import LmEvalQA
    from seal_repro.memory import without_measurements
    from seal_repro.memo import Memo
    from seal_repro.spec import load_spec
    from seal_repro.spec.executor import RayExecutor as RayExecutorSpec

    ray = _import_ray()
    model_dir = Path(args.model_dir)
    if not (model_dir / "config.json").exists() and not (model_dir / "source.json").exists():
        raise UserError(f"--model-dir: {model_dir} is not a prepared model folder (run the prepare_model stage, "
                        "e.g. `dvc repro prepare_model`)")
    spec = load_spec(args.spec)
    if spec.domain != "knowledge":
        raise UserError(f"{args.spec}: domain: the Ray bench runs knowledge specs")
    update = {"evaluation": spec.evaluation.model_copy(update={"repeats": args.repeats})}
    if args.epochs is not None:
        update["inner_loop"] = spec.inner_loop.model_copy(update={"epochs": args.epochs})
    spec = spec.model_copy(update=update)

    from seal_repro.data.loaders import load_passages

    passages = load_passages(spec.data, seed=spec.seed)[: args.passages]
    rounds = plan_rounds("teacher_synthetic", passages, {}, spec)
    if not rounds:
        raise UserError(f"{args.spec}: data: its passages carry no teacher self-edits to train on")

    _emit("bench", "ray")
    _emit("model_dir", model_dir)
    _emit("rounds", len(rounds))
    _emit("threads_per_worker", args.threads)
    _emit("cpu_count", os.cpu_count())
    _emit("load_average_1min", os.getloadavg()[0])
    with tempfile.TemporaryDirectory(prefix="seal-bench-ray-") as tmp:
        qfile = Path(tmp) / "questions.jsonl"
        write_jsonl(qfile, [{"id": q.id, "passage_id": p.id, "question": q.question, "answer": q.answer,
                             "golds": list(q.golds)} for p in passages for q in p.questions])
        recipe = KitRecipe.of(spec, model_dir, qfile, LmEvalQA())
        started = not ray.is_initialized()
        if started:
            if args.address:
                ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
            else:
                ray.init(num_cpus=max(2 * args.threads, os.cpu_count() or 1), include_dashboard=False,
                         log_to_driver=False)
        try:
            rate, records = {}, {}
            for n in (1, 2):
                cfg = RayExecutorSpec(workers=n, threads_per_worker=args.threads, num_cpus_per_worker=args.threads,
                                      num_gpus_per_worker=args.gpus_per_worker, max_retries=0)
                with RayExecutor(cfg, recipe, spec.model.device, ray) as ex:
                    t0 = time.perf_counter()
                    ex.start()
                    _emit(f"ray_{n}_workers_startup_s", time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    records[n] = run_rounds(rounds, None, spec, "bench", Memo(enabled=False),
                                            desc=f"{n} worker(s)", executor=ex, code=recipe.code)
                    seconds = time.perf_counter() - t0
                rate[n] = len(rounds) / seconds
                _emit(f"ray_{n}_workers_seconds", seconds)
                _emit(f"ray_{n}_workers_rounds_per_s", rate[n])
        finally:
            if started:
                ray.shutdown()
    _emit("results_identical", str(without_measurements(records[1]) == without_measurements(records[2])).lower())
    _emit("load_average_1min_after", os.getloadavg()[0])
    _emit("ray_speedup_2_vs_1_workers", rate[2] / rate[1])
    return 0
