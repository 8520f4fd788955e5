"""The openai sampling backend (seal_repro/sampling.py) end to end against a loopback completions server
(tests/fake_completions.py): the spec section, the knowledge and few-shot sampling functions through it, batching
(k copies of a prompt as one request with n = k), retries on a 500, the memo (a second call asks the server
nothing; hf and openai samples never share a key), the policy as a LoRA adapter, and a server the sampler starts
from the spec's command and stops (the start/stop path), or that fails to start."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from fake_completions import FakeCompletions, completion_text
from seal_repro.data.records import Passage, Question
from seal_repro.errors import UserError
from seal_repro.knowledge.self_edits import policy_prompt, sample_k, write_self_edits
from seal_repro.memo import Memo
from seal_repro.models import load_tokenizer
from seal_repro.sampling import HFSampler, ServedSampler, open_sampler, serve_argv
from seal_repro.spec.experiment import ExperimentSpec
from seal_repro.spec.self_edit import OpenAIBackend, SelfEditSpec
from fake_openai import no_proxy  # noqa: F401 (autouse fixture: no proxy for the loopback server)

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "fake_completions.py"


@pytest.fixture
def server():
    s = FakeCompletions()
    yield s
    s.close()


def _spec(model_dir, backend: dict | None = None, **self_edit) -> ExperimentSpec:
    se = {"n": 2, "sampling": {"temperature": 1.0, "top_p": 0.9, "max_new_tokens": 6}, **self_edit}
    if backend is not None:
        se["backend"] = backend
    return ExperimentSpec.model_validate({"seed": 4, "model": {"source": "local", "path": str(model_dir),
                                                                "chat_template": False}, "self_edit": se})


def _passages(n: int = 3) -> list[Passage]:
    return [Passage(f"p{i}", f"town {i}", f"the bridge of town {i} was built in 18{i}4 .",
                    (Question(f"p{i}-q0", "when was the bridge built ?", f"18{i}4"),)) for i in range(n)]


def _no_sleep(monkeypatch):
    from seal_repro import sampling

    monkeypatch.setattr(sampling, "BACKOFF_BASE_S", 0.0)  # retries at once


# ---- the spec --------------------------------------------------------------------------------------------------

def test_backend_spec_defaults_presets_and_rules(tiny_model_dir):
    assert SelfEditSpec().backend.kind == "hf"
    vllm = SelfEditSpec.model_validate({"backend": {"kind": "openai", "serve": {"command": "vllm"}}}).backend
    assert (vllm.kind, vllm.base_url, vllm.serve.command, vllm.serve.port) == ("openai", None, "vllm", None)
    custom = OpenAIBackend.model_validate({"serve": {"command": ["python", "x.py", "--port", "{port}", "{lora_args}"],
                                                     "port": 8123, "startup_timeout_s": 5}})
    assert custom.serve.command == ("python", "x.py", "--port", "{port}", "{lora_args}")
    running = OpenAIBackend(base_url="http://gpu-node:8000/v1", model="m")
    assert OpenAIBackend.model_validate(running.model_dump(mode="json")) == running  # a resolved spec loads back
    for bad, message in [
        ({"base_url": "gpu-node:8000"}, "must start with http"),
        ({"base_url": "http://h:1/v1", "serve": {"port": 9}}, "not both"),
        ({"model": "m"}, "only read with base_url"),
        ({"serve": {"command": ["vllm", "serve", "{model}", "{gpu}"]}}, "unknown placeholder(s) {gpu}"),
        ({"serve": {"command": []}}, "non-empty list"),
        ({"api_key_env": "sk-123 secret"}, "NAME of an environment variable"),
        ({"serve": "sglang"}, "valid dictionary or instance of ServeSpec"),
    ]:
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            OpenAIBackend.model_validate(bad)


def test_fewshot_spec_takes_a_backend_and_constrained_decoding_needs_hf():
    from seal_repro.spec.fewshot import FewShotSelfEditSpec

    assert FewShotSelfEditSpec.model_validate({"backend": {"kind": "openai", "serve": {"command": "vllm"}}}).backend.kind == "openai"
    with pytest.raises(ValidationError, match="needs self_edit.backend.kind: hf"):
        FewShotSelfEditSpec.model_validate({"decoding": "json_schema", "backend": {"kind": "openai"}})


def test_serve_argv_fills_the_template_and_expands_lora_args():
    fields = {"model": "/m", "host": "127.0.0.1", "port": 9, "served_model_name": "base", "dtype": "bfloat16",
              "seed": 0, "max_model_len": 1024}
    assert serve_argv(["vllm", "serve", "{model}", "--port", "{port}", "{lora_args}"], fields, []) == \
        ["vllm", "serve", "/m", "--port", "9"]
    assert serve_argv(["x", "{lora_args}", "--dtype={dtype}"], fields, ["--enable-lora", "--lora-modules", "p=/a"]) == \
        ["x", "--enable-lora", "--lora-modules", "p=/a", "--dtype=bfloat16"]


# ---- sampling through a running server (base_url) ----------------------------------------------------------

def test_knowledge_self_edits_through_the_server_retry_memo_and_batching(tiny_model_dir, server, tmp_path,
                                                                         monkeypatch):
    _no_sleep(monkeypatch)
    spec = _spec(tiny_model_dir, {"kind": "openai", "base_url": server.url, "max_concurrency": 4, "max_retries": 2})
    passages = _passages()
    tok = load_tokenizer(spec.model, tiny_model_dir)
    server.fail = 1  # the first completion request answers HTTP 500: retried
    memo = Memo(tmp_path / "memo")
    with open_sampler(spec, tiny_model_dir, None) as sampler:
        assert isinstance(sampler, ServedSampler)
        rows = write_self_edits(sampler, None, spec, passages, memo=memo, model_fingerprint="fp")
        assert sampler.client.retries == 1 and sampler.model_name == "base"
    # what the server was asked: each prompt as the tokenizer's ids (no special tokens), seeded per sample index
    asked = [r["body"] for r in server.requests if r["path"].endswith("/completions")]
    assert len(asked) == 1 + 2 * 3  # the failed try, then n = 2 samples x 3 passages
    prompts = [policy_prompt(spec, tok, p) for p in passages]
    ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    seen = {(tuple(b["prompt"]), b["seed"]) for b in asked[1:]}
    assert seen == {(tuple(ids[j]), spec.seed + 1000 * i + j) for i in range(2) for j in range(3)}
    assert all(b["n"] == 1 and b["max_tokens"] == 6 and b["temperature"] == 1.0 and b["top_p"] == 0.9
               and b["model"] == "base" for b in asked)
    # the rows: the server's text, its token count (the cap when cut at max_tokens), truncation
    assert [(r["passage_id"], r["index"]) for r in rows] == [(p.id, i) for p in passages for i in range(2)]
    for r in rows:
        j = int(r["passage_id"][1:])
        text, reason = completion_text("base", ids[j], spec.seed + 1000 * r["index"] + j, 6)
        assert r["text"] == text.strip() and r["truncated"] == (reason == "length")
        assert r["tokens"] == (6 if reason == "length" else len(text.split()))
    # a second call: every batch from the memo, nothing asked
    before = len(server.requests)
    again = Memo(tmp_path / "memo")
    with open_sampler(spec, tiny_model_dir, None) as sampler:
        assert write_self_edits(sampler, None, spec, passages, memo=again, model_fingerprint="fp") == rows
        assert sampler.client is None  # never connected
    assert len(server.requests) == before and (again.hits, again.misses) == (2, 0)


def test_hf_and_openai_samples_never_share_a_memo_key(tiny_model_dir, server, tmp_path):
    spec = _spec(tiny_model_dir, {"kind": "openai", "base_url": server.url}, n=1)
    memo = Memo(tmp_path / "memo")
    with open_sampler(spec, tiny_model_dir, None) as sampler:
        write_self_edits(sampler, None, spec, _passages(2), memo=memo, model_fingerprint="fp")
    from seal_repro import models

    model, tok = models.load(spec.model, tiny_model_dir)
    hf = Memo(tmp_path / "memo")
    write_self_edits(model, tok, spec, _passages(2), memo=hf, model_fingerprint="fp")  # a model: hf generate
    assert (hf.hits, hf.misses) == (0, 1)


def test_sample_k_sends_a_prompts_copies_as_one_request(tiny_model_dir, server):
    spec = _spec(tiny_model_dir, {"kind": "openai", "base_url": server.url})
    with open_sampler(spec, tiny_model_dir, None) as sampler:
        rows = sample_k(sampler, None, spec, _passages(2), 3, seed=11)
    asked = [r["body"] for r in server.requests if r["path"].endswith("/completions")]
    assert sorted((b["n"], b["seed"]) for b in asked) == [(3, 11), (3, 14)]  # seed: + the first copy's position
    assert [(r["passage_id"], r["index"]) for r in rows] == [(f"p{j}", i) for j in range(2) for i in range(3)]
    tok = load_tokenizer(spec.model, tiny_model_dir)
    ids = tok(policy_prompt(spec, tok, _passages(2)[0]), add_special_tokens=False)["input_ids"]
    # copy i of a prompt is choice i of its request: the server drew it with seed + i
    assert [r["text"] for r in rows[:3]] == [completion_text("base", ids, 11 + i, 6)[0] for i in range(3)]


def test_a_policy_adapter_is_loaded_on_a_running_server_under_its_hash(tiny_model_dir, server, tmp_path):
    adapter = tmp_path / "policy"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 4}))
    (adapter / "adapter_model.safetensors").write_bytes(b"weights")
    spec = _spec(tiny_model_dir, {"kind": "openai", "base_url": server.url}, n=1)
    with open_sampler(spec, tiny_model_dir, adapter) as sampler:
        write_self_edits(sampler, None, spec, _passages(1))
        name = sampler.model_name
    assert name.startswith("policy-") and server.loras == {name: str(adapter.resolve())}
    assert {r["body"]["model"] for r in server.requests if r["path"].endswith("/completions")} == {name}


def test_the_api_key_is_sent_and_a_missing_one_is_one_line(tiny_model_dir, server, monkeypatch):
    spec = _spec(tiny_model_dir, {"kind": "openai", "base_url": server.url, "api_key_env": "FAKE_SAMPLING_KEY"}, n=1)
    monkeypatch.delenv("FAKE_SAMPLING_KEY", raising=False)
    with pytest.raises(UserError, match="FAKE_SAMPLING_KEY"):
        with open_sampler(spec, tiny_model_dir, None) as sampler:
            write_self_edits(sampler, None, spec, _passages(1))


def test_a_server_that_keeps_failing_is_one_error_after_the_retries(tiny_model_dir, server, monkeypatch):
    _no_sleep(monkeypatch)
    spec = _spec(tiny_model_dir, {"kind": "openai", "base_url": server.url, "max_retries": 2}, n=1)
    server.fail = 100
    with pytest.raises(UserError, match=r"HTTP 500 .* \(after 3 tries\)"):
        with open_sampler(spec, tiny_model_dir, None) as sampler:
            write_self_edits(sampler, None, spec, _passages(1))


def test_fewshot_self_edits_through_the_server(tiny_model_dir, server, tmp_path):
    """The few-shot sampling function through the same backend (prompts rendered from a task, memoized)."""
    from seal_repro.fewshot.self_edits import sample_self_edits
    from seal_repro.fewshot.tasks import Task
    from seal_repro.spec.fewshot import FewShotSpec

    spec = FewShotSpec.model_validate({
        "model": {"source": "local", "path": str(tiny_model_dir), "chat_template": False},
        "tasks": {"train": {"split": "train", "ids": ["25ff71a9"]}, "eval": {"split": "eval", "ids": ["66e6c45b"]}},
        "self_edit": {"sampling": {"temperature": 1.0, "max_new_tokens": 5}, "n_train": 2, "n_eval": 2,
                      "backend": {"kind": "openai", "base_url": server.url}}})
    task = Task("0000abcd", train=((((1, 2),), ((2, 1),)),), test=((((3, 4),), ((4, 3),)),))
    memo = Memo(tmp_path / "memo")
    with open_sampler(spec, tiny_model_dir, None) as sampler:
        rows = sample_self_edits(sampler, None, [task], 2, spec, seed=7, memo=memo, model_fingerprint="fp")
    assert [(r["task_id"], r["index"], r["tries"]) for r in rows] == [(task.id, 0, 1), (task.id, 1, 1)]
    asked = [r["body"] for r in server.requests if r["path"].endswith("/completions")]
    assert sorted(b["seed"] for b in asked) == [7, 1007]
    with open_sampler(spec, tiny_model_dir, None) as sampler:
        assert sample_self_edits(sampler, None, [task], 2, spec, seed=7, memo=memo, model_fingerprint="fp") == rows
    assert (memo.hits, memo.misses) == (2, 2)


# ---- a server the stage starts and stops ------------------------------------------------------------------------

def _served_spec(tiny_model_dir, *extra: str, timeout: float = 60):
    command = [sys.executable, str(SCRIPT), "--port", "{port}", "--served-model-name", "{served_model_name}",
               *extra, "{lora_args}"]
    return _spec(tiny_model_dir, {"kind": "openai", "serve": {"command": command, "startup_timeout_s": timeout}}, n=1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (exited, not yet reaped) counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def test_a_started_server_serves_the_policy_as_a_lora_and_is_stopped(tiny_model_dir, tmp_path):
    adapter = tmp_path / "policy"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"r": 24}))
    spec = _served_spec(tiny_model_dir)
    tok = load_tokenizer(spec.model, tiny_model_dir)
    with open_sampler(spec, tiny_model_dir, adapter) as sampler:
        rows = write_self_edits(sampler, None, spec, _passages(2), memo=None)
        proc = sampler.server.proc
        assert sampler.model_name == "policy" and _alive(proc.pid)
        argv = sampler.server.argv
    # --max-lora-rank: the adapter's rank rounded up to a value vLLM accepts; the LoRA named `policy`
    assert argv[argv.index("--max-lora-rank") + 1] == "32" and f"policy={adapter.resolve()}" in argv
    assert not _alive(proc.pid) and proc.poll() is not None  # stopped with the phase
    prompt = tok(policy_prompt(spec, tok, _passages(2)[0]), add_special_tokens=False)["input_ids"]
    assert rows[0]["text"] == completion_text("policy", prompt, spec.seed, 6)[0].strip()


def test_a_started_server_is_stopped_when_sampling_fails(tiny_model_dir, monkeypatch):
    _no_sleep(monkeypatch)
    spec = _served_spec(tiny_model_dir, "--fail-first", "100")
    spec = spec.model_copy(update={"self_edit": spec.self_edit.model_copy(update={
        "backend": spec.self_edit.backend.model_copy(update={"max_retries": 1})})})
    with pytest.raises(UserError, match="HTTP 500"):
        with open_sampler(spec, tiny_model_dir, None) as sampler:
            try:
                write_self_edits(sampler, None, spec, _passages(1))
            finally:
                proc = sampler.server.proc
    assert not _alive(proc.pid)


def test_a_server_that_exits_at_start_is_one_error_with_its_log(tiny_model_dir):
    spec = _served_spec(tiny_model_dir, "--no-such-flag")
    with pytest.raises(UserError, match=r"exited with status 2 before answering .*unrecognized arguments"):
        with open_sampler(spec, tiny_model_dir, None) as sampler:
            write_self_edits(sampler, None, spec, _passages(1))


def test_a_server_that_never_answers_times_out_and_is_killed(tiny_model_dir, tmp_path):
    sleeper = tmp_path / "sleep.py"
    sleeper.write_text("import time\nwhile True:\n    time.sleep(1)\n")
    spec = _spec(tiny_model_dir, {"kind": "openai", "serve": {"command": [sys.executable, str(sleeper), "{port}"],
                                                               "startup_timeout_s": 2}}, n=1)
    sampler = open_sampler(spec, tiny_model_dir, None)
    with pytest.raises(UserError, match="did not answer GET /v1/models within 2 s"):
        write_self_edits(sampler, None, spec, _passages(1))
    assert sampler.server is not None and sampler.server.proc is None  # stopped (and forgotten) on the failure


# ---- the stages: no model loaded to sample ------------------------------------------------------------------------

def test_with_the_openai_backend_and_ray_workers_the_stage_loads_no_model(tiny_model_dir, server, tmp_path,
                                                                          monkeypatch):
    """knowledge.baselines.sample_and_kit with the openai backend and a Ray executor: sampled by the server, no
    model loaded by the stage (the workers build their own kits)."""
    from seal_repro.knowledge import baselines
    from seal_repro.knowledge.inner_loop import KitRecipe
    from seal_repro.lmeval.knowledge import LmEvalQA

    monkeypatch.setattr(baselines, "load_policy", lambda *a, **k: pytest.fail("the stage loaded a model"))
    spec = _spec(tiny_model_dir, {"kind": "openai", "base_url": server.url}, n=1)
    from seal_repro.spec.executor import RayExecutor

    spec = spec.model_copy(update={"executor": RayExecutor(workers=2)})
    recipe = KitRecipe.of(spec, tiny_model_dir, tmp_path / "q.jsonl", LmEvalQA())
    rows, tok, kit = baselines.sample_and_kit(spec, tiny_model_dir, None, recipe, lambda sampler: write_self_edits(
        sampler, None, spec, _passages(2)))
    assert kit is None and len(rows) == 2 and tok is not None
    # with the hf backend and the local executor, the sampling model is the kit's (loaded once)
    loads = []
    monkeypatch.setattr(baselines, "load_policy", lambda *a, **k: loads.append(1) or _real_load(*a))
    hf = _spec(tiny_model_dir, n=1)
    _, _, kit = baselines.sample_and_kit(hf, tiny_model_dir, None, KitRecipe.of(hf, tiny_model_dir, tmp_path / "q.jsonl",
                                                                                  _Scorer()),
                                         lambda sampler: write_self_edits(sampler, None, hf, _passages(1)))
    assert kit is not None and loads == [1]


class _Scorer:
    code_modules = ()

    def __call__(self, model, tokenizer, questions_file, spec):
        return type("S", (), {"version": None, "score": lambda self, ids: []})()


def _real_load(spec, model_dir, policy):
    from seal_repro.policy import load_policy

    return load_policy(spec, model_dir, policy)


def test_hf_sampler_loads_lazily_and_hands_its_model_over(tiny_model_dir):
    calls = []
    spec = _spec(tiny_model_dir)

    def load():
        calls.append(1)
        from seal_repro import models

        return models.load(spec.model, tiny_model_dir)

    sampler = open_sampler(spec, tiny_model_dir, None, load=load)
    assert isinstance(sampler, HFSampler) and sampler.tokenizer is not None and calls == []  # the tokenizer alone
    assert sampler.take() is None
    model = sampler.model
    assert calls == [1] and sampler.take()[0] is model and not sampler.loaded
