"""Small file helpers: every write is atomic (temp file + rename), so a killed stage never leaves half a file, and
a full disk is one line (`DiskFull`), never a traceback, and leaves no partial file behind."""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterable

from seal_repro.errors import UserError

# "No space left on device" and "Disk quota exceeded": what a full disk looks like to a write.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})


class DiskFull(UserError):
    """A write failed because the disk (or quota) is full; the partial file was removed."""

    exit_code = 1  # not a malformed input, but the stage must stop


def is_disk_full(err: BaseException) -> bool:
    """Whether `err` is a full disk: an OSError with ENOSPC/EDQUOT, or an error that lost the errno but kept its
    words: shutil.Error (copytree collects (src, dst, why)), safetensors' SafetensorError ("I/O error: No space
    left on device (os error 28)")."""
    if isinstance(err, OSError) and err.errno in DISK_FULL_ERRNOS:
        return True
    if isinstance(err, (shutil.Error, RuntimeError)) or type(err).__name__ == "SafetensorError":
        return any(os.strerror(n) in str(err) for n in DISK_FULL_ERRNOS)
    return False


def as_disk_full(err: BaseException, path: str | Path | None = None) -> DiskFull | None:
    """`err` as one line when it is a full disk (whatever library wrote: PEFT, safetensors, shutil), else None.
    For an entry point's `except`: a full disk is then one line and exit 1 wherever it happens."""
    if isinstance(err, DiskFull):
        return err
    if not is_disk_full(err):
        return None
    path = path or getattr(err, "filename", None)
    if path is None:
        return DiskFull("cannot write a stage output: no space left on device; free some space and re-run "
                        "(nothing partial was kept)")
    return disk_full(path, err)


def disk_full(path: str | Path, err: BaseException) -> DiskFull:
    """The one-line error for a write of `path` that failed on a full disk."""
    where = Path(path)
    while not where.exists() and where != where.parent:  # the nearest folder that exists: its file system
        where = where.parent
    try:
        free = f", {shutil.disk_usage(where).free} bytes free"
    except OSError:
        free = ""
    reason = os.strerror(err.errno) if isinstance(err, OSError) and err.errno else "no space left on device"
    return DiskFull(f"{path}: cannot write: {reason.lower()}{free}; free some space and re-run "
                    "(nothing partial was kept)")


def atomic_write_text(path: str | Path, text: str) -> None:
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(err):
            raise disk_full(path, err) from None
        raise


def write_json(path: str | Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def read_json(path: str | Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]
