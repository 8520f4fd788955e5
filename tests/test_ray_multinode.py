"""A Ray cluster of several nodes, as a researcher's cluster is: the driver joins it by address (executor.address),
the package's code reaches the workers through Ray's runtime environment (executor.code: auto ships it when an
address is set) and the recipe's files (model folder, questions) through the object store, so no worker reads a
path of the driver's. Here the nodes are three Ray node processes on this machine (ray.cluster_utils.Cluster): a
head with no CPUs and two one-CPU worker nodes, so the two actors must land on different nodes.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from seal_repro.executor import RayExecutor
from seal_repro.knowledge.inner_loop import run_rounds
from seal_repro.memo import Memo

from conftest import REPO
from test_executor import _same, tiny  # noqa: F401  (tiny: the local executor's rounds, a fixture)


@pytest.fixture(scope="module")
def cluster():
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    if ray.is_initialized():  # an earlier module's local instance: the executor must join this cluster instead
        ray.shutdown()

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for _ in range(2):
            c.add_node(num_cpus=1)
        c.wait_for_nodes()
        yield c
    finally:
        c.shutdown()


def test_two_worker_nodes_get_code_and_files_from_the_driver_and_equal_local(cluster, tiny):
    spec, rounds, recipe, local, _ = tiny
    cfg = spec.executor.model_copy(update={"address": cluster.address, "code": "auto", "max_retries": 0})
    with RayExecutor(cfg, recipe, spec.model.device) as ex:
        ex.start()
        info = ex.workers_info
        out = run_rounds(rounds, None, spec, "fp", Memo(enabled=False), executor=ex, code=recipe.code)
    # one actor on each worker node (the head offers no CPU)
    assert len({w["node"] for w in info}) == 2
    # the code: each worker runs in, and imports seal_repro from, Ray's unpacked copy of the repository (no build
    # outputs, venv or git)
    for w in info:
        copy = Path(w["cwd"])
        assert copy != REPO and not str(copy).startswith(str(REPO) + "/")
        assert (copy / "seal_repro" / "executor.py").read_bytes() == (REPO / "seal_repro" / "executor.py").read_bytes()
        assert not (copy / ".venv").exists() and not (copy / ".git").exists() and not (copy / "build").exists()
        assert Path(w["package"]) == copy / "seal_repro"  # imported from the copy, not the driver's checkout
    # the files: model folder and questions arrived by value, written where each worker keeps its own copies
    for w in info:
        inputs = w["inputs"]
        assert inputs["model_dir"] != recipe.model_dir and inputs["questions_file"] != recipe.questions_file
        assert "seal-repro-recipe-" in inputs["model_dir"] and "seal-repro-recipe-" in inputs["questions_file"]
    assert len({w["inputs"]["model_dir"] for w in info}) == 2  # not one shared folder
    # and the rounds are the local executor's, record for record
    assert _same(out) == _same(local)
