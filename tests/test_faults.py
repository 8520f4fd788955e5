"""Faults, on the tiny model and the whole knowledge pipeline (the baselines, ReST-EM + SEAL, CPT, continual, the
report), each stage its own process as under DVC:

- `kill -9` at random (seeded) moments of randomly chosen stages, then re-running from that stage: every output
  and `results/metrics.json` identical to an uninterrupted run (timings and memo counters aside);
- two runs sharing one memo folder at once: both finish, both identical to the uninterrupted run, and the memo
  holds only whole entries;
- a full disk during a stage (a tiny tmpfs; as root only): the stage fails with a one-line error and no
  traceback, leaves no file a re-run would trust, and once space is freed the re-run matches the uninterrupted
  run. Without root, the fast tests at the end simulate a full disk in-process, in every writer the stages share
  (atomic file writes, memo entries and memo folders).

Each kill trial starts the chosen stage from a copy of the uninterrupted run's earlier outputs and an empty memo
of its own, so the stage really computes when it is killed, and the re-run resumes from what the killed process
memoized.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_pipeline import TINY_SPEC

SEED = 20_251_204
KILL_TRIALS = 12
SECTIONS = """\
rl:
  train_data: {kind: fictional, offset: 3, n_passages: 2}
  iterations: 1
  k: 2
  repeats: 1
  sft: {lora: {rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}, lr: 0.01, epochs: 1, grad_accum: 1}
cpt: {method: lora, epochs: 1}
continual: {n_passages: 2, start: seal}
"""

# (stage module, its arguments, the folder it writes); {b} is the run's build folder, {r} its results folder.
COMMON = ["--spec-dir", "{b}/spec", "--model", "{b}/model", "--data", "{b}/data"]
STAGES = [
    ("shared.resolve_spec", ["--params", "{spec}", "--out", "{b}/spec"], "{b}/spec"),
    ("knowledge.prepare_data", ["--spec-dir", "{b}/spec", "--out", "{b}/data"], "{b}/data"),
    ("shared.prepare_model", ["--spec-dir", "{b}/spec", "--out", "{b}/model"], "{b}/model"),
    ("knowledge.baselines", [*COMMON, "--out", "{b}/baselines"], "{b}/baselines"),
    ("knowledge.rl", [*COMMON, "--out", "{b}/rl"], "{b}/rl"),
    ("knowledge.cpt", [*COMMON, "--baselines", "{b}/baselines", "--rl", "{b}/rl", "--out", "{b}/cpt"], "{b}/cpt"),
    ("knowledge.continual", [*COMMON, "--rl", "{b}/rl", "--out", "{b}/continual"], "{b}/continual"),
    ("knowledge.report", ["--spec-dir", "{b}/spec", "--baselines", "{b}/baselines", "--rl", "{b}/rl", "--cpt",
                          "{b}/cpt", "--continual", "{b}/continual", "--out", "{r}"], "{r}"),
]
# Values that measure the run, not its result: wall time, peak memory, how many rounds came from the memo.
VOLATILE = {"seconds", "memory", "memo_hits", "memo_misses", "round_peak_rss_mb", "round_peak_gpu_mb", "peak_rss_mb",
            "peak_gpu_mb"}
UNCOMPARED = {"provenance.json"}  # timestamps and host


@dataclass
class Run:
    root: Path
    spec: Path
    memo: Path

    @property
    def b(self) -> Path:
        return self.root / "build"

    @property
    def results(self) -> Path:
        return self.root / "results"

    def fill(self, text: str) -> str:
        return text.format(b=self.b, r=self.results, spec=self.spec)

    def command(self, i: int) -> list[str]:
        module, args, _ = STAGES[i]
        return [sys.executable, "-m", f"seal_repro.stages.{module}", *map(self.fill, args)]

    def out(self, i: int) -> Path:
        return Path(self.fill(STAGES[i][2]))

    def env(self) -> dict:
        return dict(os.environ, SEAL_REPRO_CACHE=str(self.memo), SEAL_REPRO_THREADS="1", HF_HUB_OFFLINE="1",
                    TOKENIZERS_PARALLELISM="false")

    def start(self, i: int) -> subprocess.Popen:
        return subprocess.Popen(self.command(i), env=self.env(), cwd=self.root, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def stage(self, i: int) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(i), env=self.env(), cwd=self.root, capture_output=True, text=True)

    def stages(self, first: int = 0) -> None:
        for i in range(first, len(STAGES)):
            done = self.stage(i)
            assert done.returncode == 0, f"{STAGES[i][0]}: {done.stderr[-3000:]}"


def _new_run(root: Path, spec_text: str, memo: Path | None = None) -> Run:
    root.mkdir(parents=True)
    spec = root / "tiny.yaml"
    spec.write_text(spec_text)
    return Run(root, spec, memo or root / "memo")


def _copy_outputs(src: Run, dst: Run, before: int) -> None:
    """The outputs of stages 0..before-1 of `src`, into `dst` (as if it had run them)."""
    for i in range(before):
        shutil.copytree(src.out(i), dst.out(i))
    shutil.copy(src.spec, dst.spec)


def _memo_entries(memo: Path) -> int:
    return sum(1 for p in memo.glob("*/*") if not p.name.startswith(".")) if memo.exists() else 0


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_model_dir) -> tuple[Run, list[float], list[int]]:
    """An uninterrupted run of every stage; each stage's wall time and how many memo entries it wrote."""
    spec_text = TINY_SPEC.format(model=tiny_model_dir) + SECTIONS
    ref = _new_run(tmp_path_factory.mktemp("faults") / "reference", spec_text)
    seconds, entries = [], []
    for i in range(len(STAGES)):
        start, before = time.monotonic(), _memo_entries(ref.memo)
        done = ref.stage(i)
        seconds.append(time.monotonic() - start)
        entries.append(_memo_entries(ref.memo) - before)
        assert done.returncode == 0, f"{STAGES[i][0]}: {done.stderr[-3000:]}"
    return ref, seconds, entries


def _strip(value):
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _content(path: Path):
    if path.suffix == ".json":
        return _strip(json.loads(path.read_text()))
    if path.suffix == ".jsonl":
        return [_strip(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]
    return path.read_bytes()


def _files(run: Run) -> dict[str, Path]:
    """Every output file of a run by its path inside the run; hidden files (a killed write's temp file) apart."""
    out = {}
    for top in (run.b, run.results):
        for p in top.rglob("*"):
            rel = p.relative_to(run.root)
            if p.is_file() and not any(part.startswith(".") for part in rel.parts) and p.name not in UNCOMPARED:
                out[str(rel)] = p
    return out


def assert_same_results(run: Run, ref: Run) -> None:
    """Every output as the uninterrupted run's (volatile measurements aside), metrics.json byte for byte."""
    mine, theirs = _files(run), _files(ref)
    assert sorted(mine) == sorted(theirs)
    differ = [rel for rel in sorted(mine) if _content(mine[rel]) != _content(theirs[rel])]
    assert differ == []
    assert (run.results / "metrics.json").read_bytes() == (ref.results / "metrics.json").read_bytes()
    leftovers = [p for top in (run.b, run.results) for p in top.rglob(".*")]
    assert all(".tmp" in p.name for p in leftovers), leftovers  # at most a killed atomic write's temp file


def assert_memo_whole(memo: Path, allow_temp: bool = True) -> int:
    """Every memo entry a lookup would read is whole: each .json parses, each folder holds a complete adapter.
    Returns the number of entries."""
    from safetensors import safe_open

    entries = 0
    for p in memo.rglob("*"):
        if any(part.startswith(".") for part in p.relative_to(memo).parts):  # temp files and folders: never read
            assert allow_temp, f"temporary memo file left behind: {p}"
            continue
        if p.is_file() and p.suffix == ".json" and p.parent.suffix != ".d":
            json.loads(p.read_text())
            entries += 1
        elif p.is_dir() and p.suffix == ".d":
            assert (p / "adapter_config.json").is_file(), p
            json.loads((p / "adapter_config.json").read_text())
            with safe_open(str(p / "adapter_model.safetensors"), "pt") as f:
                assert list(f.keys())
            entries += 1
    return entries


@pytest.mark.slow
def _kill_when(proc: subprocess.Popen, memo: Path, after_entries: int, jitter: float, deadline: float) -> float:
    """SIGKILL `proc` `jitter` seconds after the memo holds `after_entries` entries (0: `jitter` seconds after it
    starts); returns when, or -1 when it finished first."""
    start = time.monotonic()
    while _memo_entries(memo) < after_entries and proc.poll() is None and time.monotonic() - start < deadline:
        time.sleep(0.01)
    time.sleep(jitter)
    if proc.poll() is not None:
        return -1.0
    proc.send_signal(signal.SIGKILL)
    return time.monotonic() - start


# Stages drawn for a kill, weighted: the four that compute rounds (where a kill can land between memoized
# rounds, samples and policies) more often than those that only read and write files.
KILL_WEIGHTS = {"knowledge.prepare_data": 1, "shared.prepare_model": 1, "knowledge.baselines": 3, "knowledge.rl": 3,
                "knowledge.cpt": 3, "knowledge.continual": 3, "knowledge.report": 1}


@pytest.mark.slow
def test_kill_9_at_random_moments_of_random_stages_then_rerun_matches(reference, tmp_path):
    ref, seconds, entries = reference
    spec_text = ref.spec.read_text()
    names = [s[0] for s in STAGES]
    rng = random.Random(SEED)
    trials = []
    while len(trials) < KILL_TRIALS:
        n = len(trials)
        i = names.index(rng.choices(list(KILL_WEIGHTS), weights=list(KILL_WEIGHTS.values()))[0])
        # The moment: after a random number of the stage's memo writes (0: anywhere in the stage, imports
        # included), plus a random fraction of a second, so kills land inside a round, a write, a copy.
        after = rng.randint(0, entries[i])
        jitter = rng.uniform(0.0, 0.5 if after else seconds[i])
        for attempt in range(4):  # the stage may finish before the kill: kill sooner
            run = _new_run(tmp_path / f"trial{n}-{attempt}", spec_text)
            _copy_outputs(ref, run, i)
            proc = run.start(i)
            at = _kill_when(proc, run.memo, after, jitter, deadline=10 * seconds[i])
            proc.communicate()
            if at >= 0:
                break
            after, jitter = max(0, after - 1), jitter / 2
        assert at >= 0, f"{STAGES[i][0]} always finished before the kill"
        kept = assert_memo_whole(run.memo) if run.memo.exists() else 0
        run.stages(i)  # the re-run: the killed stage, then everything after it
        assert_same_results(run, ref)
        trials.append((STAGES[i][0], round(at, 2), kept))
        print(f"trial {n}: kill -9 {STAGES[i][0]} at {at:.2f}s, {kept}/{entries[i]} memo entries kept -> identical")
    assert len(trials) >= 10 and len({t[0] for t in trials}) >= 4, trials
    assert sum(1 for _, _, kept in trials if kept) >= 3, trials  # several kills landed between memoized results


@pytest.mark.slow
def test_two_runs_sharing_one_memo_at_once(reference, tmp_path):
    ref, _, _ = reference
    memo = tmp_path / "shared-memo"
    runs = [_new_run(tmp_path / f"run{k}", ref.spec.read_text(), memo) for k in (0, 1)]
    errors = []

    def go(run):
        try:
            run.stages()
        except AssertionError as err:  # reported below: a thread's exception would be lost
            errors.append(str(err))

    threads = [threading.Thread(target=go, args=(r,)) for r in runs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for run in runs:
        assert_same_results(run, ref)
    entries = assert_memo_whole(memo, allow_temp=False)  # both finished: not even a temporary file is left
    assert entries >= assert_memo_whole(ref.memo)


# ------------------------------------------------------------------------------------------------ full disk


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
    return done.returncode == 0


def _fill(disk: Path, leave: int) -> Path:
    """A file taking all but `leave` bytes of the disk."""
    filler = disk / "filler"
    with open(filler, "wb") as fh:
        chunk = b"\0" * (1 << 16)
        try:
            while shutil.disk_usage(disk).free > leave + len(chunk):
                fh.write(chunk)
                fh.flush()
            fh.write(b"\0" * max(0, shutil.disk_usage(disk).free - leave))
            fh.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC
    return filler


DISK_TRIALS = [  # (stage, bytes left free when it starts)
    ("knowledge.baselines", 20_000), ("knowledge.baselines", 120_000), ("knowledge.rl", 40_000),
    ("knowledge.cpt", 30_000), ("knowledge.continual", 15_000), ("knowledge.report", 100_000),
]


@pytest.mark.slow
def test_full_disk_during_a_stage_is_one_line_and_leaves_nothing_trusted(reference, tmp_path):
    ref, _, _ = reference
    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "8m"):
        pytest.skip("mounting a tmpfs needs root (the in-process test below covers the same rules)")
    names = [s[0] for s in STAGES]
    failed, tracebacks = [], []
    try:
        for n, (stage, leave) in enumerate(DISK_TRIALS):
            i = names.index(stage)
            run = _new_run(disk / f"trial{n}", ref.spec.read_text())
            _copy_outputs(ref, run, i)
            filler = _fill(disk, leave)
            done = run.stage(i)
            if done.returncode == 0:  # the space left sufficed: the disk was not full after all
                filler.unlink()
                shutil.rmtree(run.root)
                continue
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            assert "no space left on device" in lines[-1].lower(), lines[-3:]
            if "Traceback" in done.stderr:  # a writer outside seal_repro.io / memo (PEFT's adapter save, ...)
                tracebacks.append(f"{stage}: {lines[-1][:200]}")
            assert_memo_whole(run.memo)
            failed.append((stage, leave, lines[-1]))
            filler.unlink()  # space again: the re-run must not trust anything the failed stage left
            run.stages(i)
            assert_same_results(run, ref)
            shutil.rmtree(run.root)
            print(f"full disk in {stage} ({leave} bytes free): {lines[-1]}")
    finally:
        subprocess.run(["umount", str(disk)], check=False)
    assert len(failed) >= 4, failed
    assert tracebacks == [], tracebacks  # every full disk is one line, whichever library was writing


# ------------------------------------------------------------------------------------------------ full disk, in-process


def _no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_full_disk_in_an_atomic_write_keeps_the_old_file_and_says_one_line(tmp_path, monkeypatch):
    from seal_repro import io

    target = tmp_path / "out" / "summary.json"
    io.write_json(target, {"old": True})
    monkeypatch.setattr(io.os, "fsync", _no_space)  # the disk fills while the new content is written
    with pytest.raises(io.DiskFull) as info:
        io.write_json(target, {"new": True})
    [line] = info.value.lines
    assert line.startswith(f"{target}: cannot write: no space left on device") and info.value.exit_code != 0
    assert io.read_json(target) == {"old": True}  # the last whole version, never a partial new one
    assert sorted(p.name for p in target.parent.iterdir()) == ["summary.json"]  # no temp file left


def test_full_disk_in_the_memo_leaves_no_entry(tmp_path, monkeypatch):
    from seal_repro import io, memo

    m = memo.Memo(tmp_path / "memo")
    src = tmp_path / "policy"
    src.mkdir()
    (src / "adapter_config.json").write_text("{}")
    (src / "adapter_model.safetensors").write_bytes(b"x" * 100)
    real_copy = shutil.copyfile

    def copy_then_fill(a, b, **kw):  # the first file fits, the second does not
        if Path(a).name == "adapter_model.safetensors":
            Path(b).write_bytes(b"x" * 10)  # half written
            _no_space()
        return real_copy(a, b, **kw)

    monkeypatch.setattr(shutil, "copyfile", copy_then_fill)
    with pytest.raises(io.DiskFull) as info:
        m.put_dir("ab" * 32, src)
    assert "no space left on device" in info.value.lines[0] and len(info.value.lines) == 1
    assert list((tmp_path / "memo").rglob("*.d")) == [] and not m.get_dir("ab" * 32, tmp_path / "dest")
    assert [p for p in (tmp_path / "memo").rglob(".*")] == []  # nor a temporary folder
    with pytest.raises(io.DiskFull):
        monkeypatch.setattr(io.os, "fsync", _no_space)
        m.put("cd" * 32, {"result": 1})
    assert m.get("cd" * 32) is None

    # A memoized folder copied out onto a full disk: the destination keeps its old content, never half the new.
    monkeypatch.undo()
    m.put_dir("ab" * 32, src)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    monkeypatch.setattr(shutil, "copyfile", copy_then_fill)
    with pytest.raises(io.DiskFull):
        m.get_dir("ab" * 32, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
