"""Write a hash-pinned requirements file for packages installed with `pip install --no-deps` (`make lock`).

    python requirements/pin_no_deps.py OUT NAME==VERSION...

pip-compile cannot lock a package without resolving its dependencies, so these pins get their hashes here: every
file PyPI holds for that exact release (its wheel and sdist), read from PyPI's JSON simple API (PEP 691), the
same hashes pip-compile --generate-hashes writes for the rest of the lock. Standard library only.
"""

from __future__ import annotations

import json
import os
import re
import sys
import urllib.request

INDEX = os.environ.get("PIN_INDEX_URL", "https://pypi.org/simple")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _file_version(filename: str, name: str) -> str | None:
    """The version in a wheel or sdist file name of project `name`."""
    stem = re.sub(r"\.(whl|tar\.gz|zip)$", "", filename)
    parts = stem.split("-")
    if filename.endswith(".whl"):
        return parts[1] if len(parts) >= 5 else None
    if _norm(stem).startswith(_norm(name) + "-"):
        return stem[len(name) + 1:]
    return None


def hashes(name: str, version: str) -> list[str]:
    req = urllib.request.Request(f"{INDEX}/{_norm(name)}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        files = json.load(resp)["files"]
    out = sorted({f["hashes"]["sha256"] for f in files
                  if _file_version(f["filename"], name) == version and "sha256" in f.get("hashes", {})
                  and not f.get("yanked")})
    if not out:
        raise SystemExit(f"{name}=={version}: no files on {INDEX}")
    return out


def main(argv: list[str]) -> None:
    out_path, pins = argv[0], argv[1:]
    lines = [
        "#",
        f"# Installed first by make setup, with `pip install --require-hashes --no-deps -r {out_path}`; the",
        "# Makefile (NODEPS_PINS) says why each of these goes in without its dependencies. Written by `make lock`:",
        "#    python requirements/pin_no_deps.py " + " ".join(argv),
        "#",
    ]
    for pin in pins:
        name, version = pin.split("==")
        digests = hashes(name, version)
        lines.append(f"{pin} \\")
        lines += [f"    --hash=sha256:{d}" + (" \\" if i < len(digests) - 1 else "") for i, d in enumerate(digests)]
    with open(out_path, "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
