"""A content-addressed memo of inner-loop rounds.

A round's result is stored under the hash of everything that determines it (base model fingerprint,
training sequences, inner-loop and evaluation settings, seed, engine version). The same round is
never computed twice — across conditions, RL iterations, ablations and re-runs after a crash (each
round is written atomically the moment it finishes, so a killed stage redoes at most the round in flight).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Callable, Iterator, Sequence

from seal_repro.io import atomic_write_text

# Bump when a change to the engine or scoring changes what a round returns for the same inputs.
ENGINE_VERSION = "5"


def default_root() -> Path:
    return Path(os.environ.get("SEAL_REPRO_CACHE", ".seal-cache")) / "rounds"


def key_of(material: dict) -> str:
    blob = json.dumps({"engine": ENGINE_VERSION, **material}, sort_keys=True, ensure_ascii=False, default=str)
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
