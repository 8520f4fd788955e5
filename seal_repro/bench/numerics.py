"""`seal-repro bench numerics`: is a round's adapter (and are its answers) independent of the CPU's kernels?

A float32 LoRA round on a CPU follows the kernels the CPU offers: PyTorch's own vectorised kernels (reductions,
softmax, attention, element-wise ops) are compiled once per instruction set and picked at start-up
(`ATEN_CPU_CAPABILITY` caps the choice), and its float32 matmuls go to MKL's SGEMM (BLAS_INFO=mkl), which
dispatches on the CPU too (`MKL_ENABLE_INSTRUCTIONS` caps it; `MKL_CBWR` pins its code branch: MKL's "conditional
numerical reproducibility"). oneDNN (`ONEDNN_MAX_CPU_ISA`) serves half-precision and convolution paths. Every one
of these is read once, when the library initialises, so each setting runs in a fresh subprocess.

A *path* restricts this machine to the kernels a smaller CPU would use (native: nothing set; avx512: no AMX;
avx2: the AVX2-only x86 machines; sse42: no vector extensions beyond SSE4.2), each present only where this CPU
can run it. A *switch* is what one would set on every machine to make them agree (MKL_CBWR, ATen's capability
pinned, torch.use_deterministic_algorithms). A setting is `path/switch`; the grid is every path with every
switch that makes sense on it.

Each setting runs ONE knowledge inner-loop round exactly as the stages compute it (compute_round on a LoraEngine
Kit, answers by the engine's greedy generate: `bench inner-loop --answers generate`), with 1 thread, after a
warm-up round, and records the sha256 of the trained adapter's tensors, the final loss (repr), the answers, the
round's wall time and ATen's capability as torch reports it. Repeats are interleaved (every setting once, then
again), so a drift of the shared machine's speed hits all settings alike; a setting's cost is the median of its
round times over the median of native/none's. Adapters are grouped into classes of identical hashes (same for
answers), and each switch is summarised: do all paths give one adapter under it, and at what cost.

Output: the two tables (markdown) on stdout, logs on stderr, the whole result as JSON in --out.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import platform
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from seal_repro import numerics
from seal_repro.errors import UserError

DEFAULT_SPEC = "specs/knowledge/default.yaml"
DEFAULT_OUT = "build/bench/numerics.json"
# Read at process start by torch (ATen), MKL and oneDNN: cleared in every worker, then set per setting.
CONTROLLED = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA",
              "MKL_DEBUG_CPU_TYPE")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "SEAL_REPRO_THREADS": "1"}
ATEN_ORDER = ("default", "avx2", "avx512")  # ATEN_CPU_CAPABILITY values, lowest first

# path -> (the CPU flags it needs, the restriction). The restrictions cap every library that dispatches on the CPU.
PATHS: dict[str, tuple[tuple[str, ...], dict[str, str]]] = {
    "native": ((), {}),
    "avx512": (("avx512f", "avx512bw", "avx512vl", "avx512dq"),
               {"ATEN_CPU_CAPABILITY": "avx512", "MKL_ENABLE_INSTRUCTIONS": "AVX512",
                "ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}),
    "avx2": (("avx2", "fma"),
             {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}),
    "sse42": (("sse4_2",), {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
                           "ONEDNN_MAX_CPU_ISA": "SSE41"}),
}


@dataclasses.dataclass(frozen=True)
class Switch:
    env: dict
    deterministic: bool = False
    needs: str = "sse42"  # the lowest path it can be set on (MKL_CBWR=AVX2 needs an AVX2 CPU)
    doc: str = ""


SWITCHES: dict[str, Switch] = {
    "none": Switch({}, doc="nothing set: each path's own kernels"),
    "det": Switch({}, True, doc="torch.use_deterministic_algorithms(True)"),
    "cbwr_avx2": Switch({"MKL_CBWR": "AVX2"}, needs="avx2", doc="MKL_CBWR=AVX2: MKL's AVX2 branch, CNR mode"),
    "cbwr_compat": Switch({"MKL_CBWR": "COMPATIBLE"}, doc="MKL_CBWR=COMPATIBLE: MKL's SSE2-compatible branch"),
    "pin_avx2": Switch({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, needs="avx2",
                       doc="ATEN_CPU_CAPABILITY=avx2 + MKL_CBWR=AVX2 + ONEDNN_MAX_CPU_ISA=AVX2"),
    "pin_avx2_det": Switch({"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"}, True,
                           needs="avx2", doc="pin_avx2 + deterministic algorithms"),
    "pin_scalar": Switch({"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE", "ONEDNN_MAX_CPU_ISA": "SSE41"},
                         doc="ATEN_CPU_CAPABILITY=default + MKL_CBWR=COMPATIBLE + ONEDNN_MAX_CPU_ISA=SSE41"),
}
BASELINE = "native/none"


def cpu_model() -> str:
    return numerics.cpu_identity()[1] or platform.processor() or platform.machine()


def available_paths(flags: set[str] | None = None) -> list[str]:
    """The paths this CPU can be restricted to (x86 only: elsewhere just native)."""
    flags = numerics.cpu_flags() if flags is None else flags
    if platform.machine().lower() not in ("x86_64", "amd64") and flags is not None and not flags:
        return ["native"]
    return [p for p, (needs, _) in PATHS.items() if all(f in flags for f in needs)]


def _path_rank(path: str) -> int:
    return ("sse42", "avx2", "avx512", "native").index(path)


def setting_env(path: str, switch: str) -> tuple[dict, bool]:
    """(the environment a setting's worker gets on top of the cleared CONTROLLED variables, deterministic).

    A switch whose MKL_CBWR branch is not the path's MKL_ENABLE_INSTRUCTIONS drops the latter: on a real CPU of the
    path MKL_CBWR alone picks MKL's branch (the switch's `needs` keeps it within the path), but MKL 2024 lets
    MKL_ENABLE_INSTRUCTIONS=AVX512 override MKL_CBWR=AVX2 (measured: the unpinned AVX-512 adapter, bit for bit),
    so keeping both would emulate a CPU that does not exist."""
    env = dict(PATHS[path][1])
    sw = SWITCHES[switch]
    if "MKL_CBWR" in sw.env and env.get("MKL_ENABLE_INSTRUCTIONS") != sw.env["MKL_CBWR"]:
        env.pop("MKL_ENABLE_INSTRUCTIONS", None)
    for key, value in sw.env.items():
        if key == "ATEN_CPU_CAPABILITY" and key in env:  # a pin never lifts a path above its own capability
            value = min(value, env[key], key=ATEN_ORDER.index)
        if key == "ONEDNN_MAX_CPU_ISA" and key in env and path == "sse42":
            value = env[key]
        env[key] = value
    return env, sw.deterministic


def grid(paths: list[str]) -> list[str]:
    """Every path/switch setting that makes sense on this CPU, switch by switch (the baseline first)."""
    out = []
    for switch, sw in SWITCHES.items():
        for path in paths:
            if _path_rank(path) >= _path_rank(sw.needs):
                out.append(f"{path}/{switch}")
    return out


def parse_settings(text: str | None, paths: list[str]) -> list[str]:
    """--settings: comma-separated path/switch names (a bare switch means every available path with it)."""
    all_ = grid(paths)
    if not text:
        return all_
    chosen: list[str] = []
    for item in (s.strip() for s in text.split(",") if s.strip()):
        if "/" in item:
            path, switch = item.split("/", 1)
            if path not in PATHS or switch not in SWITCHES:
                raise UserError(f"--settings {item}: unknown (paths {sorted(PATHS)}, switches {sorted(SWITCHES)})")
            if path not in paths:
                raise UserError(f"--settings {item}: this CPU cannot run path {path} (has: {', '.join(paths)})")
            if item not in all_:
                raise UserError(f"--settings {item}: switch {switch} needs at least path {SWITCHES[switch].needs}")
            picked = [item]
        elif item in SWITCHES:
            picked = [s for s in all_ if s.endswith("/" + item)]
        else:
            raise UserError(f"--settings {item}: not a path/switch or a switch ({', '.join(SWITCHES)})")
        chosen += [s for s in picked if s not in chosen]
    if BASELINE not in chosen:  # the speed ratios need it
        chosen.insert(0, BASELINE)
    return chosen


# -- the worker: one round in this (fresh) process ------------------------------------------------------------------
def adapter_digest(engine) -> tuple[str, dict]:
    """sha256 over the adapter's tensors (name, dtype, shape, bytes; names sorted), and the tensors themselves."""
    import torch
    from peft import get_peft_model_state_dict

    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(engine.peft_model).items()}
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name]
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest(), state


def run_worker(job: dict) -> dict:
    """One setting: load the model, warm up, compute one round (timed), hash its adapter, save it for comparison."""
    import torch

    if job.get("deterministic"):
        torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    from seal_repro.cpu import tune_allocator

    tune_allocator()  # as the stages run rounds (seal_repro/stages/helpers.set_threads)
    from seal_repro import models
    from seal_repro.bench.inner_loop import BenchSettings, _GenerateScorer, _generate_scorer, _plan, _warm_up
    from seal_repro.data.loaders import load_passages
    from seal_repro.engine import LoraEngine
    from seal_repro.knowledge.inner_loop import Job, Kit, compute_round
    from seal_repro.spec import load_spec

    spec = load_spec(job["spec"])
    if job.get("epochs"):
        spec = spec.model_copy(update={"inner_loop": spec.inner_loop.model_copy(update={"epochs": job["epochs"]})})
    mspec = spec.model.model_copy(update={"device": "cpu"})
    passages = load_passages(spec.data, seed=spec.seed)
    settings = BenchSettings(condition=job["condition"], rounds=1, self_edit_lines=job.get("self_edit_lines"))
    rnd = _plan(spec, settings, passages)[0]
    if job.get("questions"):
        rnd = dataclasses.replace(rnd, passage=dataclasses.replace(
            rnd.passage, questions=rnd.passage.questions[: job["questions"]]))
    model, tok = models.load(mspec, Path(job["model_dir"]))
    engine = LoraEngine(model, tok, spec.inner_loop.lora)
    kit = Kit(engine, _GenerateScorer(_generate_scorer(engine, spec, [rnd.passage])), code="bench-numerics")
    _warm_up(engine, engine.base_model, tok)
    t0 = time.perf_counter()
    res = compute_round(kit, Job(rnd, spec))
    seconds = time.perf_counter() - t0
    digest, state = adapter_digest(engine)
    if job.get("save_adapter"):
        from safetensors.torch import save_file

        save_file(state, job["save_adapter"])
    answers = [a["prediction"] for a in res["answers"]]
    return {
        "adapter_sha256": digest,
        "final_loss": repr(res["train"]["final_loss"]),
        "answers": answers,
        "answers_sha256": hashlib.sha256(json.dumps(answers).encode()).hexdigest(),
        "round_seconds": seconds,
        "train_seconds": res["train"]["seconds"],
        "steps": res["train"]["steps"],
        "real_tokens": res["train"]["real_tokens"],
        "sequences": len(rnd.sequences),
        "aten_capability": torch.backends.cpu.get_cpu_capability(),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "threads": torch.get_num_threads(),
    }


# -- the driver ------------------------------------------------------------------------------------------------------
def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_setting(setting: str, job: dict, timeout: float | None = None) -> dict:
    """One setting's round in a fresh interpreter with its environment; {"error": ...} if the worker failed."""
    path, switch = setting.split("/")
    env_add, det = setting_env(path, switch)
    env = {k: v for k, v in os.environ.items() if k not in CONTROLLED}
    env.update(ONE_THREAD, **env_add)
    env["SEAL_REPRO_CPU_NUMERICS"] = "native"  # the setting's own switches only: no package pin (seal_repro/numerics.py)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    payload = json.dumps({**job, "deterministic": det})
    t0 = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-m", "seal_repro.bench.numerics", "--worker", payload], env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "env": env_add, "deterministic": det}
    wall = time.perf_counter() - t0
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {"error": f"worker exit {proc.returncode}: {tail}", "env": env_add, "deterministic": det}
    return {**json.loads(lines[-1]), "process_seconds": wall, "env": env_add}


def _classes(values: dict[str, str | None]) -> dict[str, str]:
    """setting -> class letter, letters in order of first appearance; settings without a value get '-'."""
    letters: dict[str, str] = {}
    out = {}
    names = string.ascii_uppercase + string.ascii_lowercase
    for setting, v in values.items():
        if v is None:
            out[setting] = "-"
            continue
        if v not in letters:
            letters[v] = names[len(letters)] if len(letters) < len(names) else f"#{len(letters)}"
        out[setting] = letters[v]
    return out


def _max_abs_diff(a: Path, b: Path) -> float | None:
    if not (a.exists() and b.exists()):
        return None
    from safetensors.torch import load_file

    x, y = load_file(str(a)), load_file(str(b))
    if set(x) != set(y):
        return None
    return max(float((x[k].double() - y[k].double()).abs().max()) for k in x) if x else 0.0


def summarize(settings: list[str], runs: dict[str, list[dict]], adapters: dict[str, Path] | None = None) -> dict:
    """Per-setting rows (classes, cost, stability) and per-switch rows (identical across paths? cost)."""
    first = {s: next((r for r in runs[s] if "error" not in r), None) for s in settings}
    a_cls = _classes({s: (r or {}).get("adapter_sha256") for s, r in first.items()})
    q_cls = _classes({s: (r or {}).get("answers_sha256") for s, r in first.items()})
    times = {s: [r["round_seconds"] for r in runs[s] if "error" not in r] for s in settings}
    base = statistics.median(times[BASELINE]) if times.get(BASELINE) else None
    rows = []
    for s in settings:
        r = first[s]
        ok = [x for x in runs[s] if "error" not in x]
        med = statistics.median(times[s]) if times[s] else None
        rows.append({
            "setting": s, "env": runs[s][0].get("env", {}) if runs[s] else {},
            "deterministic": SWITCHES[s.split("/")[1]].deterministic,
            "aten_capability": (r or {}).get("aten_capability"),
            "round_seconds_median": med, "round_seconds": times[s],
            "ratio_vs_baseline": (med / base) if (med and base) else None,
            "adapter_class": a_cls[s], "answers_class": q_cls[s],
            "adapter_same_as": [t for t in settings if t != s and a_cls[t] == a_cls[s] != "-"],
            "answers_same_as": [t for t in settings if t != s and q_cls[t] == q_cls[s] != "-"],
            "adapter_sha256": (r or {}).get("adapter_sha256"), "final_loss": (r or {}).get("final_loss"),
            "answers": (r or {}).get("answers"),
            # every repeat of the setting gave the same adapter and answers (determinism within a path)
            "stable": bool(ok) and len(ok) == len(runs[s]) and len({(x["adapter_sha256"], x["answers_sha256"])
                                                                    for x in ok}) == 1,
            "repeats": len(runs[s]),
            "errors": [x["error"] for x in runs[s] if "error" in x],
            "max_abs_diff_vs_baseline": (_max_abs_diff(adapters[s], adapters[BASELINE])
                                         if adapters and s in adapters and BASELINE in adapters else None),
        })
    by = {row["setting"]: row for row in rows}
    switches = []
    for switch in SWITCHES:
        members = [s for s in settings if s.split("/")[1] == switch]
        if not members:
            continue
        ratios = [by[s]["ratio_vs_baseline"] for s in members if by[s]["ratio_vs_baseline"] is not None]
        a = {by[s]["adapter_class"] for s in members}
        q = {by[s]["answers_class"] for s in members}
        switches.append({
            "switch": switch, "doc": SWITCHES[switch].doc, "paths": [s.split("/")[0] for s in members],
            "ratio_min": min(ratios) if ratios else None, "ratio_max": max(ratios) if ratios else None,
            "ratios": {s.split("/")[0]: by[s]["ratio_vs_baseline"] for s in members},
            "adapter_classes": "".join(by[s]["adapter_class"] for s in members),
            "answers_classes": "".join(by[s]["answers_class"] for s in members),
            "adapter_identical_across_paths": len(members) > 1 and len(a) == 1 and "-" not in a,
            "answers_identical_across_paths": len(members) > 1 and len(q) == 1 and "-" not in q,
        })
    return {"settings": rows, "switches": switches}


def _fmt_ratio(x) -> str:
    return "—" if x is None else f"{x:.2f}"


def format_tables(summary: dict) -> str:
    out = ["| switch | paths | s/round vs native/none | adapter classes (per path) | answers classes (per path) |"
           " identical across paths |", "|---|---|---|---|---|---|"]
    for sw in summary["switches"]:
        cost = " ".join(f"{p} {_fmt_ratio(r)}" for p, r in sw["ratios"].items())
        same = ("adapter + answers" if sw["adapter_identical_across_paths"] and sw["answers_identical_across_paths"]
                else "answers only" if sw["answers_identical_across_paths"]
                else "adapter only" if sw["adapter_identical_across_paths"]
                else "n/a (one path)" if len(sw["paths"]) == 1 else "no")
        out.append(f"| {sw['switch']} | {', '.join(sw['paths'])} | {cost} | {sw['adapter_classes']} | "
                   f"{sw['answers_classes']} | {same} |")
    out += ["", "| setting | ATen | s/round (median) | ratio | adapter | answers | final loss | max abs diff vs native "
            "| stable | adapter identical to |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in summary["settings"]:
        med = "—" if r["round_seconds_median"] is None else f"{r['round_seconds_median']:.2f}"
        diff = "—" if r["max_abs_diff_vs_baseline"] is None else f"{r['max_abs_diff_vs_baseline']:.2g}"
        err = f" ERROR: {r['errors'][0]}" if r["errors"] else ""
        out.append(f"| {r['setting']} | {r['aten_capability'] or '—'} | {med} | {_fmt_ratio(r['ratio_vs_baseline'])} "
                   f"| {r['adapter_class']} | {r['answers_class']} | {r['final_loss']} | {diff} | "
                   f"{'yes' if r['stable'] else 'no'} | {', '.join(r['adapter_same_as']) or '—'}{err} |")
    return "\n".join(out)


def environment() -> dict:
    import torch

    flags = numerics.cpu_flags()
    return {
        "cpu": cpu_model(), "machine": platform.machine(),
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx512", "amx", "avx2", "avx_vnni", "fma", "sse4"))),
        "torch": torch.__version__, "python": platform.python_version(),
        "blas": next((ln.strip() for ln in torch.__config__.show().splitlines() if "Math Kernel" in ln), None),
        "onednn": next((ln.strip() for ln in torch.__config__.show().splitlines() if "MKL-DNN" in ln), None),
        "native_aten_capability": torch.backends.cpu.get_cpu_capability(),
        "paths": {p: PATHS[p][1] for p in available_paths(flags)},
        "switches": {k: {"env": v.env, "deterministic": v.deterministic, "doc": v.doc} for k, v in SWITCHES.items()},
    }


def run_bench(spec_path: str, model_dir: Path, settings: list[str], *, repeats: int = 2, epochs: int | None = None,
              self_edit_lines: int | None = None, condition: str = "teacher_synthetic", questions: int | None = None,
              timeout: float | None = None) -> dict:
    """Every setting `repeats` times, interleaved (all settings, then all again, in a rotated order)."""
    job = {"spec": str(Path(spec_path).resolve()), "model_dir": str(Path(model_dir).resolve()), "epochs": epochs,
           "self_edit_lines": self_edit_lines, "condition": condition, "questions": questions}
    runs: dict[str, list[dict]] = {s: [] for s in settings}
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="seal-numerics-") as tmp:
        adapters = {s: Path(tmp) / f"{i}.safetensors" for i, s in enumerate(settings)}
        for rep in range(repeats):
            order = settings[rep % len(settings):] + settings[: rep % len(settings)]
            for s in order:
                extra = {"save_adapter": str(adapters[s])} if rep == 0 else {}
                r = run_setting(s, {**job, **extra}, timeout)
                runs[s].append(r)
                _log(f"[{rep + 1}/{repeats}] {s}: " + (r["error"] if "error" in r else
                     f"{r['round_seconds']:.2f} s/round, adapter {r['adapter_sha256'][:12]}, loss {r['final_loss']}, "
                     f"ATen {r['aten_capability']}"))
        summary = summarize(settings, runs, adapters)
    first = next((r for rs in runs.values() for r in rs if "error" not in r), {})
    return {
        "environment": environment(),
        "round": {**{k: v for k, v in job.items() if k not in ("spec", "model_dir")}, "spec": spec_path,
                  "model_dir": str(model_dir), "steps": first.get("steps"), "sequences": first.get("sequences"),
                  "real_tokens": first.get("real_tokens"), "threads": 1, "answers": "engine.generate (greedy)"},
        "repeats": repeats, "total_seconds": time.perf_counter() - t_start,
        **summary,
        "runs": runs,
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--spec", default=DEFAULT_SPEC, help=f"knowledge spec (default {DEFAULT_SPEC})")
    p.add_argument("--model-dir", default=None, help="a prepared model folder (default: as `bench inner-loop`: "
                   "build/models/knowledge for the embedded model, prepared there first if absent)")
    p.add_argument("--settings", default=None, metavar="LIST",
                   help="comma-separated path/switch settings or bare switches (default: the whole grid this CPU "
                        f"allows); paths {', '.join(PATHS)}; switches {', '.join(SWITCHES)}")
    p.add_argument("--repeats", type=int, default=2, metavar="N", help="runs per setting, interleaved (default 2)")
    p.add_argument("--epochs", type=int, default=None, metavar="N", help="override inner_loop.epochs")
    p.add_argument("--self-edit-lines", type=int, default=None, metavar="N",
                   help="keep the first N lines of the self-edit (default all)")
    p.add_argument("--condition", choices=("passage", "teacher_synthetic"), default="teacher_synthetic")
    p.add_argument("--questions", type=int, default=None, metavar="N", help="answer only the first N questions")
    p.add_argument("--timeout", type=float, default=None, metavar="S", help="give up on a worker after S seconds")
    p.add_argument("--list", action="store_true", help="print the settings this CPU allows and their env, then exit")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="FILE", help=f"result JSON (default {DEFAULT_OUT})")


def register(subparsers) -> None:
    p = subparsers.add_parser("numerics", help="which CPU-numerics switches make a round's adapter independent of "
                              "the CPU's kernels, and their speed cost", description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from seal_repro.io import write_json

    paths = available_paths()
    settings = parse_settings(args.settings, paths)
    if args.list:
        for s in settings:
            env, det = setting_env(*s.split("/"))
            print(f"{s}: {' '.join(f'{k}={v}' for k, v in env.items()) or '(nothing)'}"
                  f"{' + deterministic algorithms' if det else ''}")
        return 0
    for flag in ("repeats", "epochs", "self_edit_lines", "questions"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            raise UserError(f"--{flag.replace('_', '-')}: must be at least 1 (got {value})")
    from seal_repro.bench.inner_loop import resolve_model_dir
    from seal_repro.spec import load_spec

    spec = load_spec(args.spec)
    if spec.domain != "knowledge":
        raise UserError(f"{args.spec}: domain: the numerics benchmark needs a knowledge spec, not {spec.domain!r}")
    with contextlib.redirect_stdout(sys.stderr):
        model_dir = resolve_model_dir(spec, args.model_dir)
    result = run_bench(args.spec, model_dir, settings, repeats=args.repeats, epochs=args.epochs,
                       self_edit_lines=args.self_edit_lines, condition=args.condition, questions=args.questions,
                       timeout=args.timeout)
    print(format_tables(result), flush=True)
    write_json(args.out, result)
    _log(f"wrote {args.out} ({result['total_seconds']:.0f} s)")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--worker"]:
        job = json.loads(argv[1])
        with contextlib.redirect_stdout(sys.stderr):  # stdout carries the one result line only
            result = run_worker(job)
        print(json.dumps(result), flush=True)
        return 0
    parser = argparse.ArgumentParser(prog="python -m seal_repro.bench.numerics", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
