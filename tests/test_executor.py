"""The executor spec and the Ray executor: same rounds, same results as the local executor; a worker that
dies mid-round is replaced and its round retried; a spec asking for Ray without Ray installed fails cleanly.

The Ray tests run a local two-CPU Ray instance with two one-thread workers on the tiny model.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from seal_repro.data.records import Passage, Question
from seal_repro.errors import UserError
from seal_repro.executor import KILL_FILE_ENV, LocalExecutor, RayExecutor, make_executor
from seal_repro.knowledge.inner_loop import KitRecipe, plan_rounds, run_rounds
from seal_repro.lmeval.knowledge import LmEvalQA
from seal_repro.memory import without_measurements
from seal_repro.memo import Memo
from seal_repro.spec.executor import LocalExecutor as LocalExecutorSpec
from seal_repro.spec.executor import RayExecutor as RayExecutorSpec
from seal_repro.spec.experiment import ExperimentSpec
from seal_repro.spec.loader import load_spec, spec_hash

# ---- spec --------------------------------------------------------------------------------------------

# (failing input, message, passing neighbour)
RULES = [
    ({"workers": 0}, "greater than 0", {"workers": 1}),
    ({"workers": 2, "num_gpus_per_worker": 1.5}, "a share of one GPU", {"workers": 2, "num_gpus_per_worker": 2}),
    ({"workers": 2, "num_gpus_per_worker": -1}, "must be >= 0", {"workers": 2, "num_gpus_per_worker": 0.5}),
    ({"workers": 2, "threads_per_worker": 2}, "oversubscribe", {"workers": 2, "threads_per_worker": 2,
                                                                "num_cpus_per_worker": 2}),
    ({"workers": 2, "num_cpus_per_worker": 0}, "greater than 0", {"workers": 2, "num_cpus_per_worker": 0.5}),
    ({"workers": 2, "address": "head-node"}, "is not 'auto', 'host:port' or 'ray://host:port'",
     {"workers": 2, "address": "head-node:6379"}),
    ({"workers": 2, "max_retries": -1}, "greater than or equal to 0", {"workers": 2, "max_retries": 0}),
]


@pytest.mark.parametrize("bad,message,good", RULES, ids=[r[1][:24] for r in RULES])
def test_ray_executor_rule_raises(bad, message, good):
    with pytest.raises(ValidationError, match=message):
        RayExecutorSpec.model_validate(bad)


@pytest.mark.parametrize("bad,message,good", RULES, ids=[r[1][:24] for r in RULES])
def test_ray_executor_rule_passes(bad, message, good):
    RayExecutorSpec.model_validate(good)


def test_ray_executor_defaults_and_addresses():
    ex = RayExecutorSpec(workers=3)
    assert (ex.num_cpus_per_worker, ex.num_gpus_per_worker, ex.threads_per_worker, ex.address, ex.max_retries) == \
        (1.0, "auto", 1, None, 2)
    for address in ("auto", "10.0.0.1:6379", "ray://head.example.org:10001"):
        assert RayExecutorSpec(workers=1, address=address).address == address


def _spec_file(tmp_path: Path, executor: str) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(f"domain: knowledge\nmodel: {{chat_template: false}}\n{executor}")
    return path


def test_experiment_spec_executor_defaults_to_local_and_is_left_out_of_the_hash(tmp_path):
    local = load_spec(_spec_file(tmp_path, ""))
    assert local.executor == LocalExecutorSpec()
    ray = load_spec(_spec_file(tmp_path, "executor: {kind: ray, workers: 4, address: auto}\n"))
    assert ray.executor == RayExecutorSpec(workers=4, address="auto")
    assert spec_hash(ray) == spec_hash(local)  # how a run executes never splits its results
    assert spec_hash(ray) != spec_hash(local.model_copy(update={"seed": 1}))


def test_executor_settings_touch_no_stage_input(tmp_path, monkeypatch):
    """resolve_spec writes executor.yaml beside the other sections; no DVC stage reads it, and no other section
    file (nor the spec hash) changes with it, so editing it re-runs no stage that computes results."""
    import argparse

    import yaml

    from conftest import REPO
    from seal_repro.stages.shared import resolve_spec

    monkeypatch.chdir(tmp_path)
    outs = {}
    for name, text in (("local", ""), ("ray", "executor: {kind: ray, workers: 8, address: auto}\n")):
        _spec_file(tmp_path, text).rename(tmp_path / f"{name}.yaml")
        parser = argparse.ArgumentParser()
        resolve_spec.add_args(parser)
        resolve_spec.run(parser.parse_args(["--params", f"{name}.yaml", "--out", name]))
        outs[name] = {f.name: f.read_text() for f in (tmp_path / name).iterdir()}
    changed = {f for f in outs["local"] if outs["local"][f] != outs["ray"][f]}
    assert changed == {"executor.yaml", "resolved.yaml"}
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]

    def spec_deps_of(stage) -> list[str]:
        return [str(d) for d in stage.get("deps", []) if str(d).startswith("build/") and "/spec" in str(d)]

    # seal_repro/executor.py is code every stage imports; what must not be a dependency is the spec's section file
    spec_deps = [d for st in stages.values() for d in spec_deps_of(st)]
    assert spec_deps and not [d for d in spec_deps if "executor" in d]
    # the stages that compute results name the section files they read, never the whole spec folder (which holds
    # executor.yaml); only the reports read the whole resolved spec
    whole = {name for name, st in stages.items() for d in spec_deps_of(st) if d.endswith("/spec")}
    assert whole <= {"report", "fewshot_report"}, whole


@pytest.mark.parametrize("text,message", [
    ("executor: {kind: dask}\n", "executor: unknown kind 'dask' (available: local, ray)"),
    ("executor: {kind: ray}\n", "executor.workers: required key is missing"),
    ("executor: {kind: local, address: auto}\n", "executor.address: unknown key"),
    ("executor: {kind: local, workers: 0}\n", "executor.workers: must be a whole number of at least 1, or auto (got 0)"),
    ("executor: {kind: local, workers: many}\n", "executor.workers: must be a whole number of at least 1, or auto"),
    ("executor: {kind: ray, workers: 2, threads: 1}\n", "executor.threads: unknown key"),
])
def test_bad_executor_sections_name_their_key(tmp_path, text, message):
    from seal_repro.errors import SpecError

    with pytest.raises(SpecError) as err:
        load_spec(_spec_file(tmp_path, text))
    assert message in "\n".join(err.value.lines)


def test_ray_missing_is_one_line_naming_executor_kind(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now raises ImportError
    spec = load_spec(_spec_file(tmp_path, "executor: {kind: ray, workers: 2}\n"))
    recipe = KitRecipe.of(spec, tmp_path, tmp_path / "q.jsonl", LmEvalQA())
    with pytest.raises(UserError) as err:
        make_executor(spec.executor, recipe, spec.model.device)
    assert len(err.value.lines) == 1 and err.value.lines[0].startswith("executor.kind: ")
    local = load_spec(_spec_file(tmp_path, ""))
    assert isinstance(make_executor(local.executor, KitRecipe.of(local, tmp_path, tmp_path / "q.jsonl", LmEvalQA()),
                                    local.model.device), LocalExecutor)


def test_domain_modules_do_not_import_ray():
    code = ("import sys, seal_repro.executor, seal_repro.knowledge.inner_loop, seal_repro.fewshot.inner_loop, "
            "seal_repro.stages.knowledge.baselines, seal_repro.stages.knowledge.rl, seal_repro.stages.knowledge.cpt, "
            "seal_repro.stages.knowledge.continual, seal_repro.stages.fewshot.baselines, seal_repro.stages.fewshot.rl; "
            "assert 'ray' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_executor_is_domain_free():
    """seal_repro/executor.py imports nothing from a domain (seal_repro.knowledge, seal_repro.fewshot), directly or
    through the package modules it imports: a domain hands it a round function, a kit and a recipe."""
    import ast

    from seal_repro import codehash, executor

    domains = ("seal_repro.knowledge", "seal_repro.fewshot")
    tree = ast.parse(Path(executor.__file__).read_text(encoding="utf-8"))
    imported = set()
    for node in ast.walk(tree):  # every import, function bodies and TYPE_CHECKING blocks included
        if isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "a relative import in executor.py"
            imported |= {node.module or ""} | {f"{node.module}.{a.name}" for a in node.names}
    assert "seal_repro.models" in imported  # the walk sees the module's own imports
    assert not [m for m in imported if any(m == d or m.startswith(d + ".") for d in domains)]
    files = [f.relative_to(codehash.ROOT).parts[0] for f in codehash.closure(["seal_repro.executor"])]
    assert "executor.py" in files and not {"knowledge", "fewshot", "lmeval"} & set(files), files


# ---- run_rounds with any executor ---------------------------------------------------------------------

class _Reversed:
    """Yields results last item first, as a pool of workers may finish them (without calling the round function)."""

    kind = "pool"  # not local: no adapter is saved from a worker

    def __init__(self):
        self.seen = []

    def run(self, fn, items, kit=None, describe=str):
        self.seen.append([(job.round.passage.id, job.round.repeat) for job in items])
        for i in reversed(range(len(items))):
            yield i, {"seed": i, "train": None, "answers": [{"question_id": items[i].round.passage.id}]}


def _passages(n: int) -> list[Passage]:
    words = ["paris", "france", "river", "bridge", "town", "war"]
    return [Passage(f"p{i}", f"passage {i}", f"the {words[i]} was built in 18{i}4 .",
                    (Question(f"p{i}-q0", f"when was the {words[i]} built ?", f"18{i}4"),
                     Question(f"p{i}-q1", f"what was built in 18{i}4 ?", words[i])))
            for i in range(n)]


def test_run_rounds_keeps_order_memoizes_and_computes_duplicates_once(tmp_path):
    spec = ExperimentSpec.model_validate({"model": {"chat_template": False}, "evaluation": {"repeats": 2}})
    ps = _passages(3)
    rounds = plan_rounds("passage", ps, {}, spec)
    rounds = rounds + rounds[:1]  # an identical round: computed once, counted as a memo hit
    memo = Memo(tmp_path / "memo")
    ex = _Reversed()
    out = run_rounds(rounds, None, spec, "fp", memo, executor=ex, code="test")
    assert [(r["passage_id"], r["repeat"]) for r in out] == [(r.passage.id, r.repeat) for r in rounds]
    assert [o["answers"][0]["question_id"] for o in out] == [r.passage.id for r in rounds]  # each its own result
    assert len(ex.seen[0]) == 6 and (memo.hits, memo.misses) == (1, 6)
    again = run_rounds(rounds, None, spec, "fp", Memo(tmp_path / "memo"), executor=ex, code="test")
    assert len(ex.seen) == 2 and ex.seen[1] == [] and again == out  # every round from the memo
    other = Memo(tmp_path / "memo")
    run_rounds(rounds, None, spec, "fp", other, executor=ex, code="other code")  # the code is part of every key
    assert len(ex.seen[2]) == 6 and other.hits == 1


def test_local_executor_resolves_workers_and_threads():
    auto = LocalExecutorSpec()
    assert auto.resolve(2, on_cpu=True) == (2, 1)  # two copies of one thread each on a 2-core machine
    assert auto.resolve(1, on_cpu=True) == (1, 1)
    assert auto.resolve(64, on_cpu=True) == (4, 16)  # at most MAX_AUTO_WORKERS copies
    assert auto.resolve(8, on_cpu=False) == (1, None)  # a GPU: every round in the stage's process
    assert LocalExecutorSpec(workers=3).resolve(2, on_cpu=True) == (3, 1)
    assert LocalExecutorSpec(workers=2, threads_per_worker=4).resolve(2, on_cpu=True) == (2, 4)


# ---- the Ray executor on the tiny model --------------------------------------------------------------

TINY = {
    "seed": 5,
    "model": {"source": "local", "path": "MODEL", "chat_template": False, "device": "cpu"},
    "inner_loop": {"lora": {"rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}, "epochs": 2, "lr": 0.01,
                   "batch_size": 4},
    "evaluation": {"max_new_tokens": 3, "repeats": 2, "answer_prompt": "question : {question} answer :"},
    "executor": {"kind": "ray", "workers": 2, "threads_per_worker": 1, "num_cpus_per_worker": 1, "max_retries": 2},
}


@pytest.fixture(scope="module")
def kill_file(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fault") / "kill-next-round"


@pytest.fixture(scope="module")
def ray_cluster(kill_file):
    ray = pytest.importorskip("ray")
    import os

    # Workers inherit the environment of the instance started here: the fault hook's file name goes with it.
    old = os.environ.get(KILL_FILE_ENV)
    os.environ[KILL_FILE_ENV] = str(kill_file)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
    if old is None:
        os.environ.pop(KILL_FILE_ENV, None)
    else:
        os.environ[KILL_FILE_ENV] = old


@pytest.fixture(scope="module")
def tiny(tiny_model_dir, tmp_path_factory):
    """(spec, rounds, recipe, local results, kit): the local executor's answer every Ray run must equal."""
    root = tmp_path_factory.mktemp("rounds")
    spec = ExperimentSpec.model_validate({**TINY, "model": {**TINY["model"], "path": str(tiny_model_dir)}})
    ps = _passages(2)
    qfile = root / "questions.jsonl"
    qfile.write_text("".join(json.dumps({"id": q.id, "passage_id": p.id, "question": q.question, "answer": q.answer,
                                         "golds": list(q.golds)}) + "\n" for p in ps for q in p.questions))
    rounds = plan_rounds("base", ps, {}, spec) + plan_rounds("passage", ps, {}, spec)  # 2 + 4 rounds
    recipe = KitRecipe.of(spec, tiny_model_dir, qfile, LmEvalQA())
    kit = recipe()
    assert kit.code == recipe.code
    local = run_rounds(rounds, kit, spec, "fp", Memo(enabled=False))
    return spec, rounds, recipe, local, kit


def _same(records: list[dict]) -> list[dict]:
    """Records without wall-clock times and peak memory, the things two computations of a round may differ in."""
    return without_measurements(records)


@pytest.fixture(scope="module")
def pool(ray_cluster, tiny):
    spec, _, recipe, _, _ = tiny
    with RayExecutor(spec.executor, recipe, spec.model.device, ray_cluster) as ex:
        ex.start()
        yield ex


def test_ray_workers_give_the_local_results_in_round_order(pool, tiny, tmp_path):
    spec, rounds, recipe, local, _ = tiny
    assert len({w["pid"] for w in pool.workers_info}) == 2
    memo = Memo(tmp_path / "memo")
    out = run_rounds(rounds, None, spec, "fp", memo, executor=pool, code=recipe.code)
    assert _same(out) == _same(local)
    assert memo.misses == len(rounds) and len(list((tmp_path / "memo").rglob("*.json"))) == len(rounds)


def test_a_worker_that_dies_is_replaced_and_its_round_retried(pool, tiny, kill_file):
    spec, rounds, recipe, local, _ = tiny
    before = {w["pid"] for w in pool.workers_info}
    gc.collect()  # a recipe the driver no longer references is freed now, not at some later moment: a restart
    time.sleep(1)  # then needs it (Ray issue 53727: actor-restart arguments are not kept alive by Ray itself)
    kill_file.touch()  # the next round any worker starts kills that worker's process
    out = run_rounds(rounds, None, spec, "fp", Memo(enabled=False), executor=pool, code=recipe.code)
    assert not kill_file.exists(), "no worker ran the fault hook"
    assert _same(out) == _same(local)
    after = {info["pid"] for info in pool.ray.get([a.ready.remote() for a in pool.actors])}
    assert len(after) == 2 and len(after - before) == 1  # one worker was restarted in a new process


def test_a_round_that_fails_on_a_worker_raises_as_it_would_locally(pool, tiny):
    spec, rounds, recipe, _, kit = tiny
    frozen = spec.model_copy(update={"inner_loop": spec.inner_loop.model_copy(update={"lr": 0.0})})
    with pytest.raises(Exception) as here:  # lr 0: training has no effect, which a round refuses
        run_rounds(rounds[2:], kit, frozen, "fp", Memo(enabled=False))
    with pytest.raises(type(here.value)) as there:
        run_rounds(rounds[2:], None, frozen, "fp", Memo(enabled=False), executor=pool, code=recipe.code)
    assert str(there.value) == str(here.value) and "unchanged" in str(here.value)


# ---- `seal-repro bench ray` ----------------------------------------------------------------------------

def _bench(*args: str) -> int:
    import argparse

    from seal_repro.bench import ray_scaling

    parser = argparse.ArgumentParser()
    ray_scaling.register(parser.add_subparsers())
    ns = parser.parse_args(["ray", *args])
    return ns.func(ns)


def test_bench_ray_needs_a_prepared_model_folder(tmp_path):
    pytest.importorskip("ray")
    with pytest.raises(UserError, match="--model-dir: .* is not a prepared model folder"):
        _bench("--model-dir", str(tmp_path))


@pytest.mark.slow
def test_bench_ray_prints_the_speedup_last(tiny_model_dir, tmp_path, capsys):
    pytest.importorskip("ray")
    spec = tmp_path / "tiny.yaml"
    spec.write_text(f"domain: knowledge\nmodel: {{source: local, path: {tiny_model_dir}, chat_template: false}}\n"
                    "inner_loop: {lora: {rank: 2, alpha: 4, target_modules: [q_proj, v_proj]}, epochs: 1}\n"
                    "evaluation: {max_new_tokens: 3}\n")
    assert _bench("--spec", str(spec), "--model-dir", str(tiny_model_dir)) == 0
    lines = capsys.readouterr().out.splitlines()
    values = dict(line.split("=", 1) for line in lines)
    assert values["results_identical"] == "true" and values["rounds"] == "4"
    assert lines[-1].startswith("ray_speedup_2_vs_1_workers=") and float(values["ray_speedup_2_vs_1_workers"]) > 0


# ---- the local executor's forked copies ----------------------------------------------------------------

def test_forked_copies_give_the_in_process_results_in_round_order(tiny, tmp_path):
    spec, rounds, _, local, kit = tiny
    memo = Memo(tmp_path / "memo")
    out = run_rounds(rounds, kit, spec, "fp", memo, executor=LocalExecutor(workers=2, threads=1),
                     first_adapter_dir=tmp_path / "adapter")
    assert _same(out) == _same(local)
    assert len(list((tmp_path / "memo").rglob("*.json"))) == len(rounds)
    assert not (tmp_path / "adapter").exists()  # rounds[0] is a base round: nothing trained, nothing saved
    trained = [r for r in rounds if r.sequences]
    run_rounds(trained, kit, spec, "fp", Memo(enabled=False), executor=LocalExecutor(workers=2, threads=1),
               first_adapter_dir=tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()  # saved by the copy that trained rounds[0]


def test_a_forked_copy_that_dies_stops_the_stage_with_the_rounds_done_kept(tiny, tmp_path, monkeypatch):
    from seal_repro.executor import WorkerLost

    spec, rounds, _, _, kit = tiny
    kill = tmp_path / "kill"
    kill.touch()
    monkeypatch.setenv(KILL_FILE_ENV, str(kill))
    memo = Memo(tmp_path / "memo")
    with pytest.raises(WorkerLost, match="a re-run resumes"):
        run_rounds(rounds, kit, spec, "fp", memo, executor=LocalExecutor(workers=2, threads=1))
    done = len(list((tmp_path / "memo").rglob("*.json")))
    again = Memo(tmp_path / "memo")
    run_rounds(rounds, kit, spec, "fp", again, executor=LocalExecutor(workers=2, threads=1))
    assert again.hits == done and again.misses == len(rounds) - done


def test_a_round_that_fails_in_a_forked_copy_raises_as_it_would_in_process(tiny):
    spec, rounds, _, _, kit = tiny
    frozen = spec.model_copy(update={"inner_loop": spec.inner_loop.model_copy(update={"lr": 0.0})})
    with pytest.raises(Exception) as here:
        run_rounds(rounds[2:], kit, frozen, "fp", Memo(enabled=False))
    with pytest.raises(type(here.value)) as there:
        run_rounds(rounds[2:], kit, frozen, "fp", Memo(enabled=False), executor=LocalExecutor(workers=2, threads=1))
    assert str(there.value) == str(here.value) and "unchanged" in str(here.value)


def test_local_map_yields_every_item_once_in_or_out_of_process():
    import os

    def square(i):
        return i * i, os.getpid()

    here = dict(LocalExecutor().map(square, 5, "cpu"))
    there = dict(LocalExecutor(workers=2, threads=1).map(square, 5, "cpu"))
    assert {i: v[0] for i, v in here.items()} == {i: v[0] for i, v in there.items()} == {i: i * i for i in range(5)}
    assert {v[1] for v in here.values()} == {os.getpid()} and os.getpid() not in {v[1] for v in there.values()}
    assert {v[1] for v in dict(LocalExecutor(workers=2).map(square, 3, "cuda")).values()} == {os.getpid()}


def _tagged(kit, item):
    import os

    return f"{kit.tag}:{item}", os.getpid()


def test_local_run_calls_the_round_function_on_the_callers_kit_in_or_out_of_process():
    import os
    from types import SimpleNamespace

    kit = SimpleNamespace(device="cpu", tag="kit")
    items = ["a", "b", "c"]
    for ex in (LocalExecutor(), LocalExecutor(workers=2, threads=1)):
        out = dict(ex.run(_tagged, items, kit))
        assert {i: v[0] for i, v in out.items()} == {0: "kit:a", 1: "kit:b", 2: "kit:c"}
        assert ({v[1] for v in out.values()} == {os.getpid()}) == (ex.workers == 1)


# ---- recipes by value, code by runtime env, every round-running stage on Ray (issue 19) ---------------------

@dataclasses.dataclass(frozen=True)
class _PathRecipe:
    questions: str
    adapter: str
    big: str
    pointer: str
    name: str

    def __call__(self):
        return self


def test_by_value_carries_a_recipes_files_and_folders_and_rewrites_their_paths(tmp_path):
    from seal_repro.executor import ByValue

    Recipe = _PathRecipe
    (tmp_path / "q.jsonl").write_text('{"id": 1}\n')
    (tmp_path / "adapter" / "sub").mkdir(parents=True)
    (tmp_path / "adapter" / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter" / "sub" / "w.bin").write_bytes(b"\x00\x01")
    (tmp_path / "big").mkdir()
    (tmp_path / "big" / "weights").write_bytes(b"x" * 5000)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text('{"a": 1}')
    (tmp_path / "pointer").mkdir()
    (tmp_path / "pointer" / "source.json").write_text(json.dumps({"source": "local", "name_or_path": str(model)}))
    recipe = Recipe(str(tmp_path / "q.jsonl"), str(tmp_path / "adapter"), str(tmp_path / "big"),
                    str(tmp_path / "pointer"), "not-a-path")
    shipped = ByValue.of(recipe, max_bytes=4096)
    assert shipped.shipped == ("questions", "adapter", "pointer")  # big: over the limit, stays a path
    import pickle

    rebuilt = pickle.loads(pickle.dumps(shipped))()  # what a worker does: write the files, call the recipe
    assert rebuilt.big == recipe.big and rebuilt.name == "not-a-path"
    assert Path(rebuilt.questions).read_text() == '{"id": 1}\n' and rebuilt.questions != recipe.questions
    assert (Path(rebuilt.adapter) / "sub" / "w.bin").read_bytes() == b"\x00\x01"
    # a local model's pointer folder travels as the folder it points to (no driver path left in it)
    assert (Path(rebuilt.pointer) / "config.json").read_text() == '{"a": 1}'
    assert not (Path(rebuilt.pointer) / "source.json").exists()
    assert ByValue.of(recipe, max_bytes=0) is recipe


def test_the_code_ships_by_runtime_env_only_when_asked_or_joining_a_cluster():
    from conftest import REPO

    def env(**cfg):
        return RayExecutor(RayExecutorSpec(workers=1, **cfg), recipe=None, ray_module=object()).runtime_env()

    assert env() is None and env(code="installed", address="auto") is None
    shipped = env(code="auto", address="auto")
    assert shipped == env(code="ship") and shipped["working_dir"] == str(REPO)
    assert {".venv", "build", ".seal-cache", ".git"} <= set(shipped["excludes"])
    # the driver's CPU numerics mode travels, so another node's workers pin the same kernel path
    from seal_repro import numerics

    assert shipped["env_vars"]["SEAL_REPRO_CPU_NUMERICS"] == numerics.mode()


def _knowledge_spec(tiny_model_dir, **extra) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "seed": 3, "model": {"source": "local", "path": str(tiny_model_dir), "chat_template": False, "device": "cpu"},
        "data": {"kind": "fictional", "n_passages": 2, "questions_per_passage": 5},
        "self_edit": {"n": 1, "sampling": {"temperature": 1.0, "max_new_tokens": 6}},
        "inner_loop": {"lora": {"rank": 2, "alpha": 4, "target_modules": ["q_proj", "v_proj"]}, "epochs": 1,
                       "lr": 0.01, "batch_size": 4},
        "evaluation": {"max_new_tokens": 3, "bootstrap_resamples": 100},
        "conditions": ["base", "passage"],
        "cpt": {"epochs": 1, "conditions": ["base", "passage", "base_synthetic"], "lr": 0.01},
        "continual": {"n_passages": 2, "sequences": 2, "sampling": {"temperature": 1.0, "max_new_tokens": 4}},
        **extra,
    })


RAY2 = {"kind": "ray", "workers": 2, "threads_per_worker": 1, "num_cpus_per_worker": 1, "max_retries": 0}


def _outputs(folder: Path, drop=("summary.json", "README.md")) -> dict:  # README: PEFT writes the base path
    out = {}
    for f in sorted(folder.rglob("*")):
        if f.is_file() and f.name not in drop:
            if f.suffix == ".jsonl":
                out[str(f.relative_to(folder))] = _same(read_jsonl(f))
            elif f.name == "adapter_config.json":  # the base model's path: the worker's copy of the model folder
                out[str(f.relative_to(folder))] = {k: v for k, v in json.loads(f.read_text()).items()
                                                   if k != "base_model_name_or_path"}
            else:
                out[str(f.relative_to(folder))] = f.read_bytes()
    return out


def read_jsonl(path):
    from seal_repro.io import read_jsonl as read

    return read(path)


@pytest.mark.slow  # in the full default run its workers waited on CPUs an earlier test's actors held (2 of 2)
def test_knowledge_stages_on_ray_workers_equal_local_and_the_stage_loads_no_model_for_rounds(
        ray_cluster, tiny_model_dir, tmp_path, monkeypatch):
    """baselines (with the first round's adapter trained on a worker and sent back), CPT (each condition one job)
    and continual (each sequence one job) on a local 2-worker Ray cluster give the local executor's results; with
    Ray the stage itself loads a model only to sample the base model's self-edits (hf backend)."""
    from seal_repro.io import write_jsonl
    from seal_repro.knowledge import baselines, cpt, continual
    from seal_repro.knowledge.prepare import write_data

    local = _knowledge_spec(tiny_model_dir)
    ray_spec = _knowledge_spec(tiny_model_dir, executor=RAY2)
    data = tmp_path / "data"
    passages, _ = write_data(local, data)
    edits = tmp_path / "self_edits.jsonl"
    write_jsonl(edits, [{"passage_id": p.id, "index": 0, "text": f"the {p.title} is old .\nit was built ."}
                        for p in passages])
    results = {}
    loads = {}
    real_load = baselines.load_policy
    for name, spec in (("local", local), ("ray", ray_spec)):
        out = tmp_path / name
        calls = loads[name] = []

        def counting(*a, **k):
            calls.append(a[2])
            return real_load(*a, **k)

        for module in (baselines, cpt, continual):
            monkeypatch.setattr(module, "load_policy", counting)
        summaries = baselines.run_baselines(spec, tiny_model_dir, data, out / "baselines", LmEvalQA(),
                                            Memo(enabled=False))
        cpt_summary = cpt.run_cpt(spec, tiny_model_dir, data, edits, None, out / "cpt", LmEvalQA(), Memo(enabled=False))
        cont = continual.run_continual(spec, tiny_model_dir, data, None, out / "continual", LmEvalQA(),
                                       Memo(enabled=False))
        results[name] = (summaries, {k: v for k, v in cpt_summary["conditions"].items()}, cont["matrix"],
                         _outputs(out))
    assert loads["ray"] == [] and len(loads["local"]) >= 3  # baselines' kit, cpt's start model, each sequence's
    (lb, lc, lm, lo), (rb, rc, rm, ro) = results["local"], results["ray"]
    assert rb == lb and rm == lm
    assert {k: v["sequences"] for k, v in rc.items()} == {k: v["sequences"] for k, v in lc.items()}
    assert {k: (v["train"] or {}).get("steps") for k, v in rc.items()} == \
        {k: (v["train"] or {}).get("steps") for k, v in lc.items()}
    assert set(ro) == set(lo) and "baselines/passage/adapter/adapter_model.safetensors" in ro
    for f in lo:
        assert ro[f] == lo[f], f  # records, rounds, self-edits, the first round's adapter bytes


@pytest.mark.slow  # the default suite ships the code to two worker nodes (tests/test_ray_multinode.py); this one
# checks the copy's contents on a local instance the executor did not start (the per-actor upload path)
def test_workers_get_the_code_through_the_runtime_env(ray_cluster, tiny, tmp_path):
    """executor.code: ship on a local cluster: the workers start in Ray's copy of the repository (the package's
    code, no build outputs, venv or caches), what a node without the checkout imports; their rounds equal the local
    ones. (On this one machine the driver's own path, which Ray hands its workers first, still resolves the import
    to the checkout: another node has no such path.)"""
    from conftest import REPO

    spec, rounds, recipe, local, _ = tiny
    cfg = spec.executor.model_copy(update={"code": "ship"})
    with RayExecutor(cfg, recipe, spec.model.device, ray_cluster) as ex:
        ex.start()
        copies = {Path(w["cwd"]) for w in ex.workers_info}
        assert len(copies) == 1
        copy = copies.pop()
        assert copy != REPO and not str(copy).startswith(str(REPO) + "/")
        assert (copy / "seal_repro" / "executor.py").read_bytes() == (REPO / "seal_repro" / "executor.py").read_bytes()
        assert (copy / "pyproject.toml").is_file() and not (copy / ".venv").exists() and not (copy / ".git").exists()
        out = run_rounds(rounds[:3], None, spec, "fp", Memo(enabled=False), executor=ex, code=recipe.code)
    assert _same(out) == _same(local[:3])
