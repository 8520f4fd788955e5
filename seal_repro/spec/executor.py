"""Where inner-loop rounds run: in the stage's own process (local) or fanned out to Ray actors (ray).

The executor decides how rounds are computed, never what they compute: no memo key, stage output or spec
hash depends on it, so moving a run from a laptop to a cluster re-uses every round already done.
"""

import math
import re
from typing import Annotated, Literal, Union

from pydantic import Field, PositiveInt, field_validator, model_validator

from seal_repro.spec.base import Strict

# `host:port` (a GCS address) or `ray://host:port` (Ray Client); `auto` finds the cluster this node belongs to.
_ADDRESS = re.compile(r"^(ray://)?[A-Za-z0-9_.\-\[\]:]+:\d{1,5}$")


MAX_AUTO_WORKERS = 4  # `workers: auto` on a big CPU: more copies than this buy little and each holds activations
MAX_LOCAL_WORKERS = 256  # forked copies: each holds its own activations and optimizer state; no machine has more cores
MAX_THREADS = 1024  # torch threads per copy or actor: more than any machine's cores
MAX_NODE_GPUS = 16  # GPUs one Ray actor can reserve: it runs on one node, and no node has more
ROUNDS_PER_BATCH = 1  # chosen by `seal-repro bench inner-loop` (docs/BENCHMARKS.md)


class LocalExecutor(Strict):
    """Rounds on the stage's own model (the default): in its process, or side by side in forked copies of it."""

    kind: Literal["local"] = "local"
    workers: int | Literal["auto"] = Field(
        "auto", description="forked copies of the stage's process running rounds side by side (CPU only: on a GPU "
        "every round runs in the stage's process); auto: one per torch thread the stage may use "
        f"(SEAL_REPRO_THREADS, else every core), at most {MAX_AUTO_WORKERS}",
    )
    threads_per_worker: PositiveInt | None = Field(
        None, le=MAX_THREADS, description="torch threads inside each copy; None: the stage's threads shared out among "
        f"the copies (at most {MAX_THREADS})",
    )
    rounds_per_batch: int = Field(
        ROUNDS_PER_BATCH, ge=1, le=64,
        description="inner-loop rounds trained together in one forward/backward (each through its own LoRA) and "
        "answered in one batched generation; changes no result beyond float rounding (seal_repro/multilora.py)",
    )

    @field_validator("workers", mode="before")
    @classmethod
    def _workers(cls, v):
        if isinstance(v, int) and not isinstance(v, bool) and v > MAX_LOCAL_WORKERS:
            raise ValueError(f"{v} forked copies is more than {MAX_LOCAL_WORKERS}: each holds its own activations and "
                             "optimizer state, and no machine has the cores to run that many")
        if v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1):
            return v
        shown = v if isinstance(v, (int, float)) else repr(str(v)[:60])  # a long value is cut, a number shown as is
        raise ValueError(f"must be a whole number of at least 1, or auto (got {shown})")

    def resolve(self, thread_budget: int, on_cpu: bool) -> tuple[int, int | None]:
        """(workers, threads per worker) for a stage that may use `thread_budget` torch threads."""
        if not on_cpu:
            return 1, None
        workers = min(thread_budget, MAX_AUTO_WORKERS) if self.workers == "auto" else self.workers
        return workers, self.threads_per_worker or max(1, thread_budget // workers)


class RayExecutor(Strict):
    """The memo-missing rounds are spread over `workers` Ray actors, each holding the model once."""

    kind: Literal["ray"] = "ray"
    workers: PositiveInt = Field(le=10_000, description="Ray actors; each loads the model once and runs rounds one at "
                                 "a time (at most 10 000)")
    num_cpus_per_worker: float = Field(1.0, gt=0, le=MAX_THREADS, description="Ray CPU resources each actor reserves "
                                       f"(at most {MAX_THREADS}: one node's cores)")
    num_gpus_per_worker: float | Literal["auto"] = Field(
        "auto", description="Ray GPU resources each actor reserves; auto: one whole GPU when the cluster has GPUs "
        "(and model.device is not cpu), else 0",
    )
    threads_per_worker: PositiveInt = Field(1, le=MAX_THREADS, description="torch threads inside each actor (at most "
                                            f"{MAX_THREADS})")
    address: str | None = Field(
        None, description="None: start a local Ray instance; 'auto': join the cluster this node runs "
        "(`ray start`); 'host:port' or 'ray://host:port': connect to that head node",
    )
    max_retries: int = Field(2, ge=0, le=100, description="times a dead worker is restarted and its round retried")
    rounds_per_batch: int = Field(
        ROUNDS_PER_BATCH, ge=1, le=64,
        description="inner-loop rounds trained together in one forward/backward (each through its own LoRA) and "
        "answered in one batched generation; changes no result beyond float rounding (seal_repro/multilora.py)",
    )
    code: Literal["auto", "ship", "installed"] = Field(
        "installed", description="how the package's code reaches the workers: ship = Ray's runtime_env working_dir, the "
        "repository (less build/, .venv/, .dvc/, .seal-cache/, .git/, runs/), so a node needs only the Python "
        "environment; installed (the default) = each node imports its own installed copy; auto = ship when joining a "
        "cluster (address set), installed on a local Ray instance (tests/test_ray_multinode.py: a head and two worker "
        "nodes, the code shipped, rounds equal to local ones)",
    )
    by_value_mb: float = Field(
        1024.0, ge=0, le=65536, description="files and folders a worker builds its kit from (questions, prompts, a "
        "policy adapter, a model folder) travel through Ray's object store up to this size (MiB) each; a larger one "
        "(a 7B model folder) is read at the same absolute path on every node: shared storage, or every node's "
        "Hugging Face cache (model.source: hf passes only the model id)",
    )

    @field_validator("num_gpus_per_worker")
    @classmethod
    def _gpus(cls, v):
        if v != "auto" and not 0 <= v <= MAX_NODE_GPUS:
            raise ValueError(f"must be >= 0 and at most {MAX_NODE_GPUS}, the GPUs of one node (or auto)")
        return v

    @field_validator("address")
    @classmethod
    def _address(cls, v):
        if v is not None and v != "auto" and not _ADDRESS.match(v):
            raise ValueError(f"{v!r} is not 'auto', 'host:port' or 'ray://host:port'")
        return v

    @model_validator(mode="after")
    def _resources_agree(self):
        gpus = self.num_gpus_per_worker
        if gpus != "auto" and gpus > 1 and gpus != int(gpus):
            raise ValueError(f"executor.num_gpus_per_worker is {gpus}: Ray gives a worker either a share of one GPU "
                             "(<= 1) or a whole number of GPUs")
        if self.threads_per_worker > math.ceil(self.num_cpus_per_worker):
            raise ValueError(f"executor.threads_per_worker ({self.threads_per_worker}) is more than the "
                             f"{self.num_cpus_per_worker:g} CPU(s) each worker reserves (num_cpus_per_worker): "
                             "the workers would oversubscribe their cores")
        return self


ExecutorSpec = Annotated[Union[LocalExecutor, RayExecutor], Field(discriminator="kind")]
