"""A content-addressed memo of inner-loop rounds (and of other costly, deterministic results: sampled
self-edits, trained policies).

A round's result is stored under the hash of everything that determines it: base model fingerprint, training
sequences, inner-loop and evaluation settings, seed, a hash of the code that computes it (`seal_repro.codehash`:
edit batching.py and every round misses) and the versions of the libraries that compute it (`key_of` adds
them). The same round is never computed twice — across conditions, RL iterations, ablations and re-runs after a
crash (each round is written atomically the moment it finishes, so a killed stage redoes at most the round in
flight).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

from seal_repro.io import atomic_write_text, disk_full, is_disk_full

# The libraries whose code computes a round (training, generation, scoring): a new version of any of them may
# change what a round returns, so each key names their installed versions.
COMPUTING_PACKAGES = ("torch", "transformers", "peft", "tokenizers", "safetensors", "accelerate", "lm_eval", "numpy")


def default_root() -> Path:
    return Path(os.environ.get("SEAL_REPRO_CACHE", ".seal-cache")) / "rounds"


@functools.lru_cache(maxsize=1)
def library_versions() -> dict[str, str | None]:
    """{package: installed version (None: not installed)} for COMPUTING_PACKAGES."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for name in COMPUTING_PACKAGES:
        try:
            out[name] = version(name.replace("_", "-"))
        except PackageNotFoundError:
            out[name] = None
    return out


@functools.lru_cache(maxsize=1)
def cpu_numerics() -> dict[str, str | None]:
    """The CPU kernel path of this process (seal_repro/numerics.py): a round trained on another path differs in
    its last bits, so it is another key."""
    from seal_repro.numerics import signature

    return signature()


def key_of(material: dict) -> str:
    """The memo key of `material` (a JSON-able dict naming everything a result depends on), of the libraries'
    versions and of the CPU kernel path. Put the computing code in `material` as `code_fingerprint(...)` of the
    modules that run."""
    blob = json.dumps({"libraries": library_versions(), "cpu_numerics": cpu_numerics(), **material},
                      sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class Memo:
    def __init__(self, root: Path | None = None, enabled: bool = True):
        self.root = Path(root) if root else default_root()
        self.enabled = enabled
        self.hits = 0
        self.misses = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        if self.enabled:
            p = self._path(key)
            if p.exists():
                try:
                    value = json.loads(p.read_text(encoding="utf-8"))
                except (OSError, json.JSONDecodeError):
                    value = None  # a corrupt entry is recomputed, not trusted
                if value is not None:
                    self.hits += 1
                    return value
        self.misses += 1
        return None

    def put(self, key: str, value: dict) -> None:
        if self.enabled:
            atomic_write_text(self._path(key), json.dumps(value, sort_keys=True, ensure_ascii=False))

    # -- folders (e.g. a trained policy adapter) ------------------------------------------------------------
    def _dir(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.d"

    def get_dir(self, key: str, dest: Path) -> bool:
        """Copy the folder memoized under `key` to `dest` (replacing it); False (and a miss) when there is none.
        `dest` is whole or absent, never half copied: the copy is made beside it and renamed into place."""
        src = self._dir(key)
        if self.enabled and src.is_dir():
            _copy_dir_atomically(src, Path(dest), replace=True)
            self.hits += 1
            return True
        self.misses += 1
        return False

    def put_dir(self, key: str, src: Path) -> None:
        """Memoize a copy of folder `src`; the copy appears whole or not at all (renamed into place), so a kill or
        a full disk mid-copy leaves at most a hidden `.tmp-*` folder that no lookup reads. Two processes
        memoizing the same key at once both succeed: the second finds the first's copy, equally good."""
        if self.enabled:
            _copy_dir_atomically(Path(src), self._dir(key), replace=False)


def _copy_dir_atomically(src: Path, final: Path, replace: bool) -> None:
    """Copy folder `src` to `final` through a hidden temporary sibling renamed into place. replace=False: an
    existing `final` is kept (a memo entry is immutable); replace=True: it is swapped out. A full disk is one
    line (seal_repro.io.DiskFull) and leaves no temporary folder."""
    tmp = None
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{final.name}-"))
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        if replace and final.exists():
            old = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".old-{final.name}-"))
            os.replace(final, old / final.name)  # out of the way in one rename; removed below
            shutil.rmtree(old, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if replace or not final.is_dir():  # not "another process memoized it first": a real failure
                raise
    except (OSError, shutil.Error) as err:
        if is_disk_full(err):
            raise disk_full(final, err) from None
        raise
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def memoized(memo: Memo, keys: Sequence[str | None], compute: Callable[[list[int]], Iterator[tuple[int, dict]]],
             desc: str) -> list[dict | None]:
    """The result for each item: from the memo, or computed once per distinct key and memoized as it arrives.

    `keys[i]` None: item i is left None (nothing to compute). `compute(todo)` gets the index of the first item
    of every distinct key the memo lacks and yields (position in todo, result) in any order; a copy of an
    item is counted as a hit, as a one-by-one loop would count it once the first copy is memoized."""
    from tqdm import tqdm

    results: list[dict | None] = [None] * len(keys)
    pending: dict[str, list[int]] = {}  # memo key -> the items it answers
    for i, key in enumerate(keys):
        if key is None:
            continue
        if key in pending:
            pending[key].append(i)
            if memo.enabled:
                memo.hits += 1
            else:
                memo.misses += 1
            continue
        results[i] = memo.get(key)
        if results[i] is None:
            pending[key] = [i]
    todo_keys = list(pending)
    with tqdm(total=len(keys), initial=len(keys) - sum(map(len, pending.values())), desc=desc, unit="round",
              dynamic_ncols=True) as bar:
        for j, result in compute([pending[k][0] for k in todo_keys]):
            memo.put(todo_keys[j], result)
            for i in pending[todo_keys[j]]:
                results[i] = result
            bar.update(len(pending[todo_keys[j]]))
    return results


def fingerprint_model_dir(path: str | Path) -> str:
    """A cheap, content-based fingerprint of a model folder: config + sizes + head/tail bytes of weight files.

    Hashing every byte of a 7B checkpoint per stage would cost minutes; head+tail+size catches any real
    change of weights (different training, dtype, conversion) without reading the whole file.
    """
    path = Path(path)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()) if path.is_dir() else []:
        if f.is_file() and not f.name.startswith("."):
            h.update(f.name.encode())
            size = f.stat().st_size
            h.update(str(size).encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), os.SEEK_END)
                    h.update(fh.read())
    return h.hexdigest()
