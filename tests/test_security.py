"""Secrets and trust: a planted API key never reaches an output, a log or provenance; remote code only on request.

The end-to-end test runs every knowledge stage (`seal-repro run`: the four baselines, ReST-EM, SEAL, CPT,
continual, the report) on the tiny model with the LLM judge pointed at a loopback OpenAI-compatible server
that misbehaves (a 500 and a 429 first) and echoes the Authorization header back in every reply, the
worst case for a leak. Then every byte written under the working folder (results, build folders, memo
cache) and everything printed or logged is searched for the key.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from pathlib import Path

import pytest

from fake_openai import chat, no_proxy, server  # noqa: F401 (fixtures)
from seal_repro.spec import SPEC_MODELS
from seal_repro.spec.loader import _models_in
from test_pipeline import TINY_SPEC
from test_provenance import assert_provenance

KEY_ENV = "SEAL_REPRO_TEST_JUDGE_KEY"
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


def _judge(body: dict, headers) -> tuple:
    """'yes' when the gold is in the model answer; every reply quotes the Authorization header it got."""
    prompt = body["messages"][-1]["content"]
    gold = re.search(r"Reference answer\(s\): (.*)", prompt).group(1).split(" | ")[0].lower()
    answer = re.search(r"Model answer: (.*)", prompt).group(1).lower()
    verdict = "yes" if gold and gold in answer else "no"
    return "ok", chat(f"{verdict} (request authorised by {headers['Authorization']})")


def test_planted_api_key_is_in_no_output_log_or_provenance(server, tiny_model_dir, tmp_path, monkeypatch, capfd,
                                                           caplog):
    from seal_repro.cli import main

    key = f"sk-PLANTED-{uuid.uuid4().hex}"
    monkeypatch.setenv(KEY_ENV, key)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEAL_REPRO_CACHE", str(tmp_path / "cache"))
    echo_500 = lambda body, h: ("err", 500, f"upstream rejected {h['Authorization']}".encode(), {})  # noqa: E731
    echo_429 = lambda body, h: ("err", 429, f"slow down, {h['Authorization']}".encode(), {"Retry-After": "0"})  # noqa: E731
    server.script = [echo_500, echo_429, _judge]
    grader = (f"evaluation: {{max_new_tokens: 4, bootstrap_resamples: 200, grader: {{kind: judge, base_url: "
              f"'{server.url}', model: judge-model, api_key_env: {KEY_ENV}, max_retries: 3, timeout_s: 10}}}}\n")
    spec = TINY_SPEC.format(model=tiny_model_dir).replace(
        "evaluation: {max_new_tokens: 4, bootstrap_resamples: 200}\n", grader) + SECTIONS
    assert grader in spec
    Path("tiny.yaml").write_text(spec)
    caplog.set_level(logging.DEBUG)

    assert main(["run", "tiny.yaml", "--out", "out"]) == 0

    # The key did go out, to the server, in the header: the search below could have found it.
    assert len(server.requests) > 100
    assert all(r["headers"]["Authorization"] == f"Bearer {key}" for r in server.requests)
    metrics = json.loads(Path("out/results/metrics.json").read_text())
    assert metrics["passage.n_questions"] == 15 and "seal.accuracy" in metrics and "cpt.seal.accuracy" in metrics

    out, err = capfd.readouterr()
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) > 50
    leaks = [str(p.relative_to(tmp_path)) for p in files if key.encode() in p.read_bytes()]
    assert leaks == []
    for where, text in (("stdout", out), ("stderr", err), ("logs", caplog.text)):
        assert key not in text, where
    assert "judge: HTTP 500" in caplog.text  # the retries were logged (scrubbed)
    records = Path("out/results/records.jsonl").read_text()
    assert "request authorised by Bearer ***" in records  # the echoed key was there, and was scrubbed

    prov = json.loads(Path("out/results/provenance.json").read_text())
    assert prov["grader"]["api_key_env"] == KEY_ENV  # the variable's name is recorded, its value never
    assert_provenance(prov, "out/build/spec")  # and the knowledge report's provenance is complete


def _fields(model, prefix="", seen=()):
    if model in seen:
        return
    for name, info in model.model_fields.items():
        yield f"{prefix}{name}"
        for sub in _models_in(info.annotation):
            yield from _fields(sub, f"{prefix}{name}.", seen + (model,))


def test_only_the_judge_reads_a_key_and_only_by_variable_name():
    """The fewshot domain talks to no endpoint, so the knowledge judge is the one place a key enters; a new
    key-like field anywhere must be a `*_env` name (and get a planted-key test like the one above)."""
    keyish = {(domain, f) for domain, m in SPEC_MODELS.items() for f in _fields(m)
              if re.search(r"key|token|secret|password", f.rsplit(".", 1)[-1], re.I)}
    keyish = {(d, f) for d, f in keyish if not f.endswith("max_new_tokens")}
    # the judge and the completions server (self_edit.backend: openai) take a key, each by variable name only
    assert keyish == {("knowledge", "evaluation.grader.api_key_env"), ("knowledge", "self_edit.backend.api_key_env"),
                      ("fewshot", "self_edit.backend.api_key_env")}


@pytest.mark.parametrize("trust", [False, True])
def test_trust_remote_code_only_when_the_spec_says_so(trust, tmp_path, monkeypatch):
    import transformers

    from seal_repro import models
    from seal_repro.spec.model import ModelSpec

    seen = []

    class Stop(Exception):
        pass

    def fake(*args, **kwargs):
        seen.append(kwargs.get("trust_remote_code"))
        if len(seen) == 2:
            raise Stop
        return type("Tok", (), {"pad_token": "p"})()

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", fake)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", fake)
    (tmp_path / "m").mkdir()
    spec = ModelSpec(source="local", path=str(tmp_path / "m"), chat_template=False, trust_remote_code=trust)
    with pytest.raises(Stop):
        models.load(spec, tmp_path / "m")
    assert seen == [trust, trust]
    assert ModelSpec(chat_template=False).trust_remote_code is False  # off unless a spec turns it on
