"""Executors: where rounds run. Domain-free: an executor maps a round function over rounds, nothing more.

A domain supplies (seal_repro/knowledge/inner_loop.py, seal_repro/fewshot/inner_loop.py):
- a *kit*: what computing a round needs, loaded once (model, LoRA engine, scoring function); it has a `device`;
- a *recipe*: a small picklable zero-argument callable that builds the kit (paths and the spec), for workers that
  must build their own;
- a *round function* `fn(kit, item) -> result`, module-level so it pickles by reference.

- `LocalExecutor`: on the stage's own kit: in the stage's process, or, on a CPU with `workers` > 1, side by side
  in forked copies of it.
- `RayExecutor`: on `workers` Ray actors; each builds the kit once from the recipe, then runs one item per call.
  A round's seed comes from its content, so a round computed on any worker equals the round computed locally
  (given the same torch thread count). A worker whose process dies is restarted by Ray and its item retried, up
  to `max_retries` times.

Multi-node: nothing a worker needs is read from the driver's disk at an absolute path when it can travel. The
package's code goes through Ray's runtime environment (`executor.code`: the repository as the actors' working_dir,
less build outputs, the venv and caches); the recipe goes through the object store once (`ray.put`), with every
file or folder it names up to `executor.by_value_mb` carried inside it by value (`ByValue`: questions, prompts, a
policy adapter, a model pointer or a small model folder), rewritten into a temporary folder on the worker. Larger
folders (a 7B model) stay paths every node must see (shared storage or each node's Hugging Face cache).

Ray is imported only when a spec asks for it, so the package works without it installed.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from seal_repro.cpu import release_free_memory
from seal_repro.errors import UserError
from seal_repro.models import SOURCE_FILE, resolve_device

# Fault injection for tests and drills: when this variable names a file that exists as a worker starts a
# round, the worker deletes the file and kills its own process (so exactly one worker dies, once).
KILL_FILE_ENV = "SEAL_REPRO_TEST_KILL_FILE"

RAY_MISSING = ("executor.kind: 'ray' needs the ray package, which is not installed here "
               "(pip install 'seal-repro[ray]', or pip install 'ray>=2.9')")

RoundFn = Callable[[Any, Any], Any]  # (kit, item) -> result


class WorkerLost(RuntimeError):
    """A round's worker died more often than executor.max_retries allows."""


class LocalExecutor:
    """Rounds on the caller's engine and scorer: one after another in this process, or, with `workers` > 1,
    side by side in that many forked copies of it, `threads` torch threads each.

    Why forked copies: they share the loaded imports, model and scorer (copy-on-write), so a worker costs
    milliseconds, where a fresh process (a Ray actor) spends ~8 s importing and loading before its first round,
    more than a stage's handful of rounds gains from it. Why side by side: on a CPU, rounds on one thread each
    in parallel do more work than one round at a time on every thread (measured on 2 cores, SmolLM2-135M:
    4 rounds in 27.9 s against 35.1 s; the small matmuls and element-wise ops of a step scale poorly across
    threads). A round's seed comes from its content and the base weights are never written, so which copy
    computes a round does not change it (given the thread count). CPU only, and only where `fork` exists:
    a CUDA context does not survive a fork.
    """

    kind = "local"

    def __init__(self, workers: int = 1, threads: int | None = None):
        self.workers = workers
        self.threads = threads

    def run(self, fn: RoundFn, items: Sequence, kit, describe: Callable[[Any], str] = str
            ) -> Iterator[tuple[int, Any]]:
        """(index, fn(kit, items[index])) per item as each finishes, on `kit` (the caller's)."""
        yield from self.map(lambda i: fn(kit, items[i]), len(items), kit.device, lambda i: describe(items[i]))

    def map(self, fn: Callable[[int], Any], n: int, device, describe: Callable[[int], str] = str
            ) -> Iterator[tuple[int, Any]]:
        """(i, fn(i)) for i in range(n) as each finishes: in this process, or in forked copies when `workers` > 1,
        the device is the CPU and the platform can fork. `fn`'s results must pickle; `describe(i)` names item i
        in the error a dead copy raises."""
        workers = min(self.workers, n)
        if workers <= 1 or getattr(device, "type", device) != "cpu" or "fork" not in multiprocessing.get_all_start_methods():
            for i in range(n):
                yield i, fn(i)
            return
        yield from _forked_map(fn, n, workers, self.threads or max(1, thread_budget() // workers), describe)

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_FORKED: Callable[[int], Any] | None = None  # the function a LocalExecutor's forked copies inherit


def _forked_map(fn, n: int, workers: int, threads: int, describe) -> Iterator[tuple[int, Any]]:
    # Imported here to keep `import seal_repro.executor` light for the CLI (concurrent.futures pulls in more).
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    global _FORKED
    _FORKED = fn  # set before the pool forks, so every copy inherits it (a closure would not pickle)
    release_free_memory()  # else each copy's first step copies the parent's free heap pages (seal_repro/cpu.py)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"), initializer=_start_copy,
                               initargs=(threads,))
    try:
        futures = {pool.submit(_forked_call, i): i for i in range(n)}
        for fut in as_completed(futures):
            i = futures[fut]
            try:
                result = fut.result()
            except BrokenProcessPool:
                raise WorkerLost(f"executor: a worker process died (at the latest during {describe(i)}); "
                                 "what finished is in the memo, so a re-run resumes") from None
            yield i, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _FORKED = None


def thread_budget() -> int:
    """The torch threads a stage may use: SEAL_REPRO_THREADS, else every core."""
    return int(os.environ.get("SEAL_REPRO_THREADS", "0")) or os.cpu_count() or 1


def _start_copy(threads: int) -> None:
    import threading

    import torch
    from tqdm import tqdm

    torch.set_num_threads(threads)
    # tqdm's write lock is a multiprocessing lock the fork shared with the stage: a copy killed while holding it
    # (the pool ends the others when one dies) would leave the stage's own progress bar waiting on it forever.
    tqdm.set_lock(threading.RLock())


def _forked_call(i: int):
    _maybe_die()
    return _FORKED(i)


def _maybe_die() -> None:
    """The fault injection KILL_FILE_ENV describes."""
    kill_file = os.environ.get(KILL_FILE_ENV)
    if kill_file:
        try:
            os.remove(kill_file)
        except FileNotFoundError:
            pass
        else:
            os._exit(1)  # a crash, not an exception: the process is gone mid-round


# Workers that cannot start (their CPUs/GPUs held by other actors, a cluster too small) would wait forever.
WORKER_START_TIMEOUT_S = float(os.environ.get("SEAL_REPRO_RAY_START_TIMEOUT_S", 900))


# -- recipes by value ---------------------------------------------------------------------------------------------
# Folders never shipped (caches, version control) and the repository parts Ray's working_dir leaves out.
CODE_EXCLUDES = [".git", ".venv", "build", ".dvc/cache", ".dvc/tmp", ".seal-cache", "runs", "**/__pycache__",
                 ".pytest_cache", ".hypothesis", "*.egg-info"]


def _files_of(path: Path) -> list[tuple[str, Path]]:
    """(relative name, file) of a file or of every regular file under a folder (hidden folders left out)."""
    if path.is_file():
        return [(path.name, path)]
    out = []
    for f in sorted(path.rglob("*")):
        rel = f.relative_to(path)
        if f.is_file() and not any(part.startswith(".") for part in rel.parts[:-1]):
            out.append((rel.as_posix(), f))
    return out


def _shipped_path(path: Path) -> Path:
    """What to ship for a path: a model pointer folder (prepare_model's source.json) of a local model is shipped
    as the folder it points to, so the worker needs neither the pointer's target nor the driver's paths."""
    pointer = path / SOURCE_FILE if path.is_dir() else None
    if pointer is not None and pointer.is_file():
        try:
            src = json.loads(pointer.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return path
        if src.get("source") == "local" and Path(src.get("name_or_path", "")).is_dir():
            return Path(src["name_or_path"])
    return path


@dataclasses.dataclass(frozen=True)
class Payload:
    """A file or folder's bytes: `single` for a file (its name), else a folder's relative names."""

    single: bool
    files: tuple[tuple[str, bytes], ...]

    def write(self, root: Path) -> Path:
        target = root / self.files[0][0] if self.single else root
        for name, data in self.files:
            f = root / name
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)
        return target


@dataclasses.dataclass(frozen=True)
class ByValue:
    """A recipe (a frozen dataclass) whose path fields travel by value: on the worker each is written into a
    temporary folder and the recipe is called with the new paths. Domain-free: any string field naming an
    existing file or folder of at most `max_bytes` is carried."""

    recipe: Any
    payloads: tuple[tuple[str, Payload], ...]

    @classmethod
    def of(cls, recipe, max_bytes: float):
        if not dataclasses.is_dataclass(recipe) or max_bytes <= 0:
            return recipe
        payloads = []
        for field in dataclasses.fields(recipe):
            value = getattr(recipe, field.name)
            if not isinstance(value, str) or not value or not os.path.isabs(value):
                continue
            path = Path(value)
            if not path.exists():
                continue
            src = _shipped_path(path)
            files = _files_of(src)
            if not files or sum(f.stat().st_size for _, f in files) > max_bytes:
                continue  # too large (a 7B model folder): a path every node must see
            payloads.append((field.name, Payload(src.is_file(), tuple((n, f.read_bytes()) for n, f in files))))
        return cls(recipe, tuple(payloads)) if payloads else recipe

    @property
    def shipped(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.payloads)

    def materialize(self):
        """The recipe with its carried files written into a temporary folder of this process and its path fields
        pointing there."""
        root = Path(tempfile.mkdtemp(prefix="seal-repro-recipe-"))
        atexit.register(shutil.rmtree, root, True)
        updates = {name: str(payload.write(root / name)) for name, payload in self.payloads}
        return dataclasses.replace(self.recipe, **updates)

    def __call__(self):
        return self.materialize()()


def free_device_memory() -> None:
    """Hand back what the process's dropped models held: Python's garbage, and the CUDA cache when torch is loaded
    (a driver frees its model this way before Ray workers or a completions server need the GPU)."""
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class RoundWorker:
    """The body of one Ray actor: the kit built once from the recipe, then one item per call."""

    def __init__(self, recipe: Callable[[], Any], threads: int):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch

        torch.set_num_threads(threads)
        # The paths the kit is built from: this process's copies of the files the driver sent by value.
        self.inputs: dict[str, str] = {}
        if isinstance(recipe, ByValue):
            recipe = recipe.materialize()
            self.inputs = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(recipe)
                           if isinstance(getattr(recipe, f.name), str)}
        self.kit = recipe()

    def ready(self) -> dict:
        import socket

        import ray

        import seal_repro

        # cwd: Ray's copy of the repository when the code ships by runtime env (executor.code); node: the Ray node
        # the actor was placed on; inputs: the recipe's path fields as this worker sees them
        return {"pid": os.getpid(), "host": socket.gethostname(), "device": str(self.kit.device),
                "package": str(Path(seal_repro.__file__).resolve().parent), "cwd": os.getcwd(),
                "node": ray.get_runtime_context().get_node_id(), "inputs": self.inputs}

    def call(self, fn: RoundFn, item):
        _maybe_die()
        return fn(self.kit, item)


def _summary(err: BaseException) -> str:
    """The last line of an error (a remote error's own message comes after Ray's traceback)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


class RayExecutor:
    """Rounds spread over a pool of Ray actors, each given the next round as soon as it is free.

    Outside a `with` block the pool lives for one `run` call; inside, for the whole block (what a caller
    running several batches of rounds wants: each worker loads the model once). A local Ray instance this
    executor started is shut down with the pool.
    """

    kind = "ray"

    def __init__(self, cfg, recipe: Callable[[], Any], model_device: str = "auto", ray_module=None):
        self.cfg = cfg
        self.recipe = recipe
        self.model_device = model_device
        if ray_module is None:
            ray_module = _import_ray()
        self.ray = ray_module
        self.actors: list = []
        self._recipe_ref = None  # the recipe in the object store, held while the workers may restart
        self.workers_info: list[dict] = []
        self._started_ray = False
        self._held = False
        self._job_env = False  # whether this executor's ray.init attached the code to the job

    # -- the pool ---------------------------------------------------------------------------------
    def _connect(self) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        kwargs = dict(include_dashboard=False, log_to_driver=False)
        env = self.runtime_env()
        if env is not None:  # the job carries the code: every worker of it starts in Ray's copy of the repository
            kwargs["runtime_env"] = env
            self._job_env = True
        if self.cfg.address is None:
            ray.init(**kwargs)
        else:
            try:
                ray.init(address=self.cfg.address, **kwargs)
            except (ConnectionError, RuntimeError) as err:
                raise UserError(f"executor.address: cannot connect to the Ray cluster at {self.cfg.address!r} "
                                f"({_summary(err)})") from None
        self._started_ray = True

    def num_gpus(self) -> float:
        """GPUs each worker reserves: `auto` is one whole GPU when the cluster has any (and the model may use it)."""
        want = self.cfg.num_gpus_per_worker
        device = self.model_device
        have = self.ray.cluster_resources().get("GPU", 0)
        if want == "auto":
            want = 0.0 if device == "cpu" or have < 1 else 1.0
        if device == "cuda" and want == 0:
            raise UserError("executor.num_gpus_per_worker: model.device is cuda but the Ray cluster has no GPU "
                            "for the workers")
        return float(want)

    def _check_fits(self, gpus: float) -> None:
        total = self.ray.cluster_resources()
        n = self.cfg.workers
        problems = []
        for name, per, key in (("CPU", self.cfg.num_cpus_per_worker, "num_cpus_per_worker"),
                               ("GPU", gpus, "num_gpus_per_worker")):
            need, have = n * per, total.get(name, 0)
            if per and need > have + 1e-9:
                problems.append(f"executor.workers: {n} workers x {per:g} {name} (executor.{key}) need {need:g} "
                                f"{name}s but the Ray cluster has {have:g}")
        if problems and self._started_ray and self.cfg.address is None:
            raise UserError(problems)  # a local instance never grows: the actors would wait forever
        for p in problems:  # a cluster may be autoscaling: say so, and wait
            print(f"warning: {p}; waiting for the cluster to grow", file=sys.stderr)

    def start(self) -> None:
        """Start the workers and wait until each has loaded the model."""
        if self.actors:
            return
        ray = self.ray
        self._connect()
        gpus = self.num_gpus()
        self._check_fits(gpus)
        options = dict(num_cpus=self.cfg.num_cpus_per_worker, num_gpus=gpus,
                       max_restarts=self.cfg.max_retries, max_task_retries=self.cfg.max_retries)
        env = self.runtime_env()
        if env is not None and not self._job_env:  # Ray was started elsewhere: the code goes with the actors
            options["runtime_env"] = self._uploaded(env)
        actor_cls = ray.remote(RoundWorker).options(**options)
        # One copy of the recipe (and the files it carries) in the object store, whatever the number of workers.
        # The pool keeps its reference for as long as the workers live: Ray does not keep an actor's constructor
        # arguments alive for its restarts (ray-project/ray#53727), and a worker restarted after the driver dropped
        # the recipe failed with "The object has already been deleted by the reference counting protocol".
        self._recipe_ref = ray.put(ByValue.of(self.recipe, getattr(self.cfg, "by_value_mb", 0) * 2**20))
        self.actors = [actor_cls.remote(self._recipe_ref, self.cfg.threads_per_worker)
                       for _ in range(self.cfg.workers)]
        try:
            self.workers_info = ray.get([a.ready.remote() for a in self.actors], timeout=WORKER_START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise WorkerLost(f"executor: {self.cfg.workers} Ray workers did not start within "
                             f"{WORKER_START_TIMEOUT_S:.0f} s: the cluster lacks the CPUs/GPUs they ask for (`ray "
                             "status`), or other actors still hold them") from None
        except Exception as err:
            self.close()
            cause = getattr(err, "cause", None)
            if isinstance(cause, UserError):  # e.g. the model folder does not load: the stage's own message
                raise cause from None
            raise WorkerLost(f"executor: a Ray worker failed to load the model: {_summary(err)}") from err

    def runtime_env(self) -> dict | None:
        """Ray's runtime environment for the actors: the repository as their working_dir (so its `seal_repro`
        comes first on their import path) when `executor.code` ships the code, else None."""
        code = getattr(self.cfg, "code", "installed")
        if code == "installed" or (code == "auto" and self.cfg.address is None):
            return None
        repo = Path(__file__).resolve().parent.parent
        if not (repo / "seal_repro" / "__init__.py").is_file() or not (repo / "pyproject.toml").is_file():
            raise UserError("executor.code: ship needs the package in its repository (a source checkout); this one "
                            f"is installed at {repo}: use executor.code: installed and install it on every node")
        from seal_repro import numerics

        # the driver's CPU numerics mode, so other nodes' workers pin the same kernel path (seal_repro/numerics.py)
        return {"working_dir": str(repo), "excludes": list(CODE_EXCLUDES),
                "env_vars": {"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
                             numerics.SWITCH: numerics.mode()}}

    def _uploaded(self, env: dict) -> dict:
        """`env` with its working_dir uploaded to the cluster (an actor's runtime_env takes a package URI, not a
        folder: only ray.init uploads folders itself)."""
        try:
            from ray._private.runtime_env.working_dir import upload_working_dir_if_needed
        except ImportError:
            upload_working_dir_if_needed = None
        if upload_working_dir_if_needed is None:
            raise UserError("executor.code: ship needs this executor to start or join Ray itself (Ray was initialized "
                            "before it, and this Ray version cannot attach the code to single actors)")
        # The package is zipped in a scratch folder of its own: Ray's default (the current directory) lies inside
        # the repository being zipped when a stage runs from it, and the zip would grow by swallowing itself.
        scratch = tempfile.mkdtemp(prefix="seal-repro-ray-pkg-")
        try:
            try:
                return upload_working_dir_if_needed(dict(env), include_gitignore=True, scratch_dir=scratch)
            except TypeError:  # older Ray: no include_gitignore argument
                return upload_working_dir_if_needed(dict(env), scratch_dir=scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def close(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # already dead
                pass
        self.actors = []
        self._recipe_ref = None
        if self._started_ray:
            self.ray.shutdown()
            self._started_ray = self._job_env = False

    def __enter__(self):
        self._held = True
        return self

    def __exit__(self, *exc) -> None:
        self._held = False
        self.close()

    # -- rounds -----------------------------------------------------------------------------------
    def run(self, fn: RoundFn, items: Sequence, kit=None, describe: Callable[[Any], str] = str
            ) -> Iterator[tuple[int, Any]]:
        """(index, fn(worker's kit, items[index])) per item as the workers finish them; `kit` (the caller's) is
        unused: each worker built its own from the recipe."""
        if not items:
            return
        ray = self.ray
        from ray.exceptions import RayActorError, RayTaskError

        self.start()
        try:
            todo = deque(range(len(items)))
            idle = list(self.actors)
            running: dict = {}  # ObjectRef -> item index
            owner: dict = {}  # ObjectRef -> actor
            while todo or running:
                while todo and idle:
                    actor, i = idle.pop(0), todo.popleft()
                    ref = actor.call.remote(fn, items[i])
                    running[ref], owner[ref] = i, actor
                done, _ = ray.wait(list(running), num_returns=1)
                for ref in done:
                    i, actor = running.pop(ref), owner.pop(ref)
                    try:
                        result = ray.get(ref)
                    except RayTaskError as err:  # the round raised: the very error it raises locally
                        cause = getattr(err, "cause", None)
                        raise (cause if isinstance(cause, Exception) else err) from None
                    except RayActorError as err:
                        raise WorkerLost(
                            f"executor: the worker running {describe(items[i])} died more than executor.max_retries="
                            f"{self.cfg.max_retries} times: {_summary(err)}") from None
                    idle.append(actor)
                    yield i, result
        finally:
            if not self._held:
                self.close()


def _import_ray():
    try:
        import ray
    except ImportError:
        raise UserError(RAY_MISSING) from None
    return ray


def make_executor(executor_spec, recipe: Callable[[], Any], model_device: str = "auto"):
    """The executor a spec's `executor:` section asks for; a Ray one gets the recipe its workers build kits from."""
    if executor_spec is None or executor_spec.kind == "local":
        return local_executor(executor_spec, model_device)
    if executor_spec.kind == "ray":
        return RayExecutor(executor_spec, recipe, model_device, _import_ray())
    raise ValueError(f"unknown executor kind {executor_spec.kind!r}")


def local_executor(executor_spec, model_device: str = "auto") -> LocalExecutor:
    """The spec's local executor, for work that runs on the stage's own model (CPT conditions, continual): a
    spec that sends rounds to Ray runs such work in the stage's process."""
    if executor_spec is None or executor_spec.kind != "local":
        return LocalExecutor()
    return LocalExecutor(*executor_spec.resolve(thread_budget(), resolve_device(model_device) == "cpu"))


def remote(executor_spec) -> bool:
    """Whether the spec's rounds run on workers that build their own kits (Ray): the stage then loads a model only
    where it must itself sample or train, never for rounds."""
    return executor_spec is not None and executor_spec.kind != "local"


__all__ = ["ByValue", "KILL_FILE_ENV", "LocalExecutor", "RayExecutor", "RoundWorker", "WorkerLost",
           "free_device_memory", "local_executor", "make_executor", "remote", "thread_budget"]
