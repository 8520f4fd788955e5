"""Provenance written beside every result: resolved spec + hash, versions, git commit, seeds, hardware."""

from __future__ import annotations

import importlib.metadata as md
import os
import platform
import subprocess

PACKAGES = ("seal-repro", "torch", "transformers", "peft", "lm_eval", "dvc", "datasets", "numpy", "pydantic")


def _version(name: str) -> str | None:
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def git_state() -> dict:
    def run(*cmd):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return None

    commit = run("git", "rev-parse", "HEAD")
    dirty = run("git", "status", "--porcelain", "--untracked-files=no")
    return {"commit": commit, "dirty": bool(dirty) if dirty is not None else None}


def hardware() -> dict:
    info = {"platform": platform.platform(), "python": platform.python_version(), "cpu_count": os.cpu_count()}
    try:
        import torch

        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return info


def collect(spec, spec_hash: str, extra: dict | None = None) -> dict:
    """Never includes environment variables: API keys live there (the judge reads its key by name only)."""
    return {
        "spec": spec.model_dump(mode="json"),
        "spec_hash": spec_hash,
        "protocol": spec.protocol,
        "seed": spec.seed,
        "packages": {p: _version(p) for p in PACKAGES},
        "git": git_state(),
        "hardware": hardware(),
        **(extra or {}),
    }
