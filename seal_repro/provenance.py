"""Provenance written beside every result: resolved spec + hash, versions, the lock they were installed from, git
commit, seeds, hardware, the paper and protocol version the spec claims to reproduce; and the run folders that
keep specs' results apart."""

from __future__ import annotations

import importlib.metadata as md
import json
import hashlib
import os
import platform
import subprocess
from pathlib import Path

from seal_repro import numerics
from seal_repro.errors import UserError

PACKAGES = ("seal-repro", "torch", "transformers", "peft", "lm_eval", "dvc", "datasets", "numpy", "pydantic")
PAPER = "SEAL: Self-Adapting Language Models, arXiv 2506.10943"
PROVENANCE_KEYS = ("spec", "spec_hash", "paper", "protocol", "seed", "seeds", "packages", "lock", "git", "hardware")
# The lock `make setup` installs from (tests/test_environment.py checks the installed packages against it), and
# the file of packages it installs without their dependencies; paths relative to the checkout.
LOCK_FILES = ("requirements/lock.txt", "requirements/no-deps.txt")
ROOT = Path(__file__).resolve().parents[1]
RUN_MARKER = "run.json"  # in a `seal-repro run` folder: which spec's results it holds


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def lock_state(root: Path = ROOT) -> dict:
    """{"files": {lock file: sha256 of its bytes (None: not in this checkout, e.g. a non-editable install)},
    "torch": the torch build installed beside it}. torch is not in the lock's hashes (TORCH_SPEC picks the build,
    e.g. a CUDA one), so its exact build is recorded here: version with local label, CUDA/HIP version, git commit."""
    files = {}
    for rel in LOCK_FILES:
        try:
            files[rel] = hashlib.sha256((root / rel).read_bytes()).hexdigest()
        except OSError:
            files[rel] = None
    return {"files": files, "torch": torch_build()}


def torch_build() -> dict | None:
    try:
        import torch
    except ImportError:
        return None
    v = torch.version
    return {"version": torch.__version__, "cuda": getattr(v, "cuda", None), "hip": getattr(v, "hip", None),
            "git": getattr(v, "git_version", None)}


def git_state() -> dict:
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("git", "rev-parse", "HEAD")
    dirty = run("git", "status", "--porcelain", "--untracked-files=no")
    if commit is None:  # run from outside the checkout (e.g. `seal-repro run --out /tmp/x`): the code's own repo
        here = str(Path(__file__).resolve().parent)
        commit = run("git", "-C", here, "rev-parse", "HEAD")
        dirty = run("git", "-C", here, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


# The switches that pick a CPU's kernel path (docs/BENCHMARKS.md, "CPU numerics across kernel paths"): a run's
# numbers are bit-identical only on the same path, so provenance names it. Only these named variables are read.
NUMERICS_ENV = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "ONEDNN_MAX_CPU_ISA")
_ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")


def _cpu() -> dict:
    """The CPU's model name and the instruction-set flags that decide float kernels (Linux /proc/cpuinfo)."""
    info = numerics.cpu_info()
    if not info:
        return {"cpu_model": platform.processor() or None, "cpu_isa": None}
    flags = numerics.cpu_flags()
    return {"cpu_model": info.get("model name"), "cpu_isa": [f for f in _ISA_FLAGS if f in flags]}


def hardware() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count(),
            **_cpu(), "numerics_env": {k: os.environ.get(k) for k in NUMERICS_ENV},
            "cpu_numerics_mode": numerics.mode(),
            # what MKL really runs: MKL_CBWR=AVX2 is Intel-only, and another vendor's CPU runs AUTO (its own)
            "mkl_branch": numerics.mkl_branch(os.environ.get("MKL_CBWR"), numerics.cpu_identity()[0])}
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
        info["torch_cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    except ImportError:
        pass
    return info


def _seeds(dumped: dict, at: str = "") -> dict:
    """Every seed the spec sets, by dotted key (every other seed in a run is derived from these)."""
    out = {}
    for key, value in dumped.items():
        if isinstance(value, dict):
            out.update(_seeds(value, f"{at}{key}."))
        elif "seed" in key and isinstance(value, int):
            out[f"{at}{key}"] = value
    return out


def protocol_versions(spec) -> dict:
    """The protocol version of each section that names one (e.g. CPT: paper v1 LoRA or v2 full fine-tuning)."""
    out = {}
    for name in type(spec).model_fields:
        version = getattr(getattr(spec, name), "protocol_version", None)
        if isinstance(version, str):
            out[name] = version
    return out


def collect(spec, spec_hash: str, extra: dict | None = None) -> dict:
    """Never includes environment variables: API keys live there (the judge reads its key by name only)."""
    dumped = spec.model_dump(mode="json")
    return {
        "spec": dumped,
        "spec_hash": spec_hash,
        "paper": PAPER,
        "protocol": spec.protocol,
        "protocol_versions": protocol_versions(spec),
        "seed": spec.seed,
        "seeds": _seeds(dumped),
        "packages": {p: _version(p) for p in PACKAGES},
        "lock": lock_state(),
        "git": git_state(),
        "hardware": hardware(),
        **(extra or {}),
    }


def run_folder(spec_file: str | os.PathLike, spec, out: str | os.PathLike | None = None) -> Path:
    """The folder `seal-repro run` writes `spec`'s results into, claimed for that spec.

    Default `runs/<spec file stem>-<spec hash[:8]>`: two specs never share a folder, even with the same file
    name in different folders, and an edited spec gets a new one. A folder that already holds another spec's
    results (or anything that is not a run) is refused, so no run overwrites another spec's results.
    """
    from seal_repro.spec import spec_hash

    h = spec_hash(spec)
    folder = Path(out) if out is not None else Path("runs") / f"{Path(spec_file).stem}-{h[:8]}"
    marker = folder / RUN_MARKER
    if marker.is_file():
        try:
            claimed = json.loads(marker.read_text(encoding="utf-8"))
            other_hash, other_file = str(claimed["spec_hash"]), str(claimed.get("spec_file"))
        except (OSError, ValueError, TypeError, KeyError):
            raise UserError(f"{marker}: unreadable; delete {folder} or choose another --out") from None
        if other_hash != h:
            raise UserError(f"{folder}: holds the results of another spec ({other_file}, hash {other_hash[:12]}; "
                            f"this one is {h[:12]}); choose another --out, or delete the folder")
    elif (folder / "build" / "spec" / "hash.txt").is_file():  # a run from before the marker: its resolved spec
        other_hash = (folder / "build" / "spec" / "hash.txt").read_text(encoding="utf-8").strip()
        if other_hash != h:
            raise UserError(f"{folder}: holds the results of another spec (hash {other_hash[:12]}; this one is "
                            f"{h[:12]}); choose another --out, or delete the folder")
    elif folder.is_file() or (folder.is_dir() and any(folder.iterdir())):
        raise UserError(f"{folder}: exists and is not a `seal-repro run` folder (no {RUN_MARKER}); "
                        "choose another --out")
    from seal_repro.io import write_json

    write_json(marker, {"spec_hash": h, "spec_file": str(spec_file), "protocol": spec.protocol})
    return folder
