"""Sampling backends for self-edits: Hugging Face `generate` in the stage's process, or an OpenAI-compatible
completions server (vLLM on a GPU node) that the stage starts, uses and stops.

A *sampler* is what the domains' sampling functions (knowledge/self_edits.py, fewshot/self_edits.py) draw from:

- `HFSampler` (`self_edit.backend.kind: hf`, the default): the stage's model, loaded lazily through a callable so a
  phase whose samples are all memoized loads nothing; the domain calls `engine.generate_details` on it (fixed
  batches of evaluation.batch_size prompts, each waiting for its longest sample).
- `ServedSampler` (`kind: openai`): `/v1/completions`, one request per distinct prompt (its copies as `n`), each
  seeded, `max_concurrency` in flight (the server batches continuously: no sample waits for another's end),
  retried with backoff on 408/409/425/429/5xx and broken connections. The prompt goes as token ids (the
  tokenizer's, without special tokens, exactly what `generate` sees, so no server adds a second BOS). The policy
  is the base model plus a LoRA adapter: a started server serves it with `--lora-modules policy=DIR` and the
  requests name `policy`; a running server (`base_url`) is asked to load it (`POST /v1/load_lora_adapter`, vLLM
  with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) under a name made of the adapter's hash. Rows: `text`, `tokens`
  (max_tokens when finish_reason is "length", else the text re-tokenized), `truncated` (finish_reason "length").
- `ManagedServer`: the server process of one sampling phase, started from the spec's command template (or the
  `vllm` preset) with the base model folder and the adapter, ready when GET /v1/models answers, stopped (its
  whole process group: SIGTERM, then SIGKILL) when the phase ends or fails.

`open_sampler(spec, model_dir, policy_dir, load=…)` picks one by the spec. The samples' memo key names the
backend kind (the domains' `_sample`): the two backends' numerics differ, so their samples are never mixed.

stdlib urllib, as the judge client (graders/judge.py): one small JSON POST per prompt needs no SDK. Its retry
helpers are not imported from there: this module's code is part of every sample's memo key, and the judge's code
should not be.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from seal_repro.errors import UserError
from seal_repro.models import load_tokenizer
from seal_repro.spec.self_edit import HFBackend, OpenAIBackend

log = logging.getLogger(__name__)

LORA_NAME = "policy"  # the policy adapter's name on a server this module starts
BASE_NAME = "base"  # the base model's name on a server this module starts
# `serve.command: vllm`. {lora_args}: --enable-lora --max-lora-rank R --lora-modules policy=DIR, or nothing.
VLLM_COMMAND = ("vllm", "serve", "{model}", "--host", "{host}", "--port", "{port}", "--served-model-name",
                "{served_model_name}", "--dtype", "{dtype}", "--seed", "{seed}", "--max-model-len", "{max_model_len}",
                "{lora_args}")
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)  # the --max-lora-rank values vLLM accepts (>= 8 here)
BACKOFF_BASE_S, BACKOFF_MAX_S = 1.0, 60.0  # retry i waits about BACKOFF_BASE_S * 2**i (jittered), at most the max
_RETRY_STATUS = {408, 409, 425, 429}
_DETAIL_CHARS = 300
_LOG_TAIL_LINES = 20


# -- the HTTP client --------------------------------------------------------------------------------------------------
class _Retryable(Exception):
    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.reason, self.retry_after = reason, retry_after


def _retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


class CompletionsClient:
    """`/v1/models`, `/v1/completions` and `/v1/load_lora_adapter` of one OpenAI-compatible server, with retries."""

    def __init__(self, base_url: str, *, timeout_s: float, max_retries: int, max_concurrency: int,
                 api_key_env: str | None = None, env: Mapping[str, str] | None = None,
                 sleep: Callable[[float], None] = time.sleep, backoff_base_s: float | None = None,
                 backoff_max_s: float | None = None):
        env = os.environ if env is None else env
        self._key = None
        if api_key_env:
            self._key = env.get(api_key_env)
            if not self._key:
                raise UserError(f"self_edit.backend.api_key_env names {api_key_env!r}, which is not set or empty")
        self.base_url = base_url.rstrip("/")
        self.timeout_s, self.max_retries, self.max_concurrency = timeout_s, max_retries, max_concurrency
        self._sleep = sleep
        self._backoff_base_s = BACKOFF_BASE_S if backoff_base_s is None else backoff_base_s
        self._backoff_max_s = BACKOFF_MAX_S if backoff_max_s is None else backoff_max_s
        self._rng = random.Random(0)
        # No proxy: a sampling server is a machine of the run (a proxy from the environment would swallow
        # requests meant for 127.0.0.1 or a cluster node).
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        self.retries = 0  # requests retried, for tests and logs

    def scrub(self, text: str) -> str:
        return text.replace(self._key, "***") if self._key else text

    def _request(self, method: str, path: str, body: dict | None = None, timeout: float | None = None) -> dict:
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method=method)
        try:
            with self._opener.open(req, timeout=timeout or self.timeout_s) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as err:
            try:
                text = self.scrub(err.read(4096).decode("utf-8", "replace")) if err.fp else ""
            except (OSError, http.client.HTTPException):
                text = ""
            reason = f"HTTP {err.code} from {method} {path}: {text[:_DETAIL_CHARS]!r}"
            if err.code in _RETRY_STATUS or err.code >= 500:
                raise _Retryable(reason, _retry_after_s(err.headers.get("Retry-After"))) from None
            raise UserError(f"self_edit.backend: {reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, socket.timeout, TimeoutError, ConnectionError) as err:
            raise _Retryable(f"{type(err).__name__}: {getattr(err, 'reason', err)} ({method} {path})") from None
        try:
            return json.loads(raw.decode("utf-8", "replace"))
        except ValueError:
            raise _Retryable(f"malformed reply to {method} {path}: {self.scrub(raw[:_DETAIL_CHARS].decode('utf-8', 'replace'))!r}") from None

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        """The reply's JSON, retried with exponential backoff (and jitter) on what retrying can fix."""
        for attempt in range(self.max_retries + 1):
            try:
                return self._request(method, path, body)
            except _Retryable as err:
                if attempt == self.max_retries:
                    raise UserError(f"self_edit.backend: {err.reason} (after {attempt + 1} tries)") from None
                delay = min(self._backoff_max_s, self._backoff_base_s * 2**attempt) * (0.5 + self._rng.random() / 2)
                if err.retry_after is not None:
                    delay = max(delay, min(err.retry_after, self._backoff_max_s))
                log.warning(f"sampling server: {err.reason}; retry {attempt + 1}/{self.max_retries} in {delay:.2f}s")
                self.retries += 1
                self._sleep(delay)
        raise AssertionError("unreachable")

    def models(self, timeout: float | None = None) -> list[str]:
        """The model names GET /models lists (one try: a readiness probe)."""
        reply = self._request("GET", "/models", timeout=timeout)
        return [m["id"] for m in reply.get("data", []) if isinstance(m, dict) and "id" in m]

    def completions(self, requests: Sequence[dict]) -> list[dict]:
        """Each request's reply, in order; `max_concurrency` in flight."""
        if len(requests) <= 1 or self.max_concurrency == 1:
            return [self.call("POST", "/completions", r) for r in requests]
        with ThreadPoolExecutor(min(self.max_concurrency, len(requests))) as pool:
            return list(pool.map(lambda r: self.call("POST", "/completions", r), requests))


# -- the server process -----------------------------------------------------------------------------------------------
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ManagedServer:
    """A completions server process for one sampling phase: started, waited for (GET /v1/models), stopped.

    The process gets its own session, so stopping it ends everything it started (vLLM's engine processes) and
    nothing else; its output goes to a log file whose tail a failure to start quotes."""

    def __init__(self, argv: Sequence[str], host: str, port: int, startup_timeout_s: float, poll_s: float = 0.5):
        self.argv, self.host, self.port = list(argv), host, port
        self.startup_timeout_s, self.poll_s = startup_timeout_s, poll_s
        self.base_url = f"http://{host}:{port}/v1"
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self) -> None:
        fd, name = tempfile.mkstemp(prefix="seal-repro-server-", suffix=".log")
        self.log_path = Path(name)
        try:
            # Nothing is downloaded (as models.load): the model must be a folder or in the local HF cache.
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=fd, stderr=subprocess.STDOUT,
                                         start_new_session=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        except OSError as err:
            raise UserError(f"self_edit.backend.serve.command: cannot start {self.argv[0]!r}: {err.strerror or err}") \
                from None
        finally:
            os.close(fd)
        print(f"sampling server: started {' '.join(self.argv[:3])} … (pid {self.proc.pid}, log {self.log_path})")
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise

    def wait_ready(self) -> None:
        probe = CompletionsClient(self.base_url, timeout_s=5, max_retries=0, max_concurrency=1)
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            code = self.proc.poll()
            if code is not None:
                raise UserError(f"self_edit.backend.serve: the server exited with status {code} before answering "
                                f"GET /v1/models; its log ends: {self.log_tail()}")
            try:
                probe.models(timeout=5)
                return
            except (_Retryable, UserError):
                pass
            if time.monotonic() > deadline:
                raise UserError(f"self_edit.backend.serve.startup_timeout_s: the server did not answer GET /v1/models "
                                f"within {self.startup_timeout_s:g} s; its log ends: {self.log_tail()}")
            time.sleep(self.poll_s)

    def log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except (OSError, AttributeError):
            return "(no log)"
        return " | ".join(lines[-_LOG_TAIL_LINES:]) or "(empty)"

    def stop(self, grace_s: float = 30.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)  # its own session: the server and the processes it started
            except ProcessLookupError:
                return
            try:
                proc.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def lora_rank(adapter_dir: Path) -> int:
    return int(json.loads((Path(adapter_dir) / "adapter_config.json").read_text(encoding="utf-8"))["r"])


def serve_argv(command: Sequence[str], fields: Mapping[str, object], lora_args: Sequence[str]) -> list[str]:
    """The server's argv: the template's placeholders filled; an argument that is exactly {lora_args} replaced by
    the LoRA arguments (or dropped)."""
    out: list[str] = []
    for arg in command:
        if arg == "{lora_args}":
            out += list(lora_args)
        else:
            out.append(arg.format(**fields, lora_args=" ".join(lora_args)))
    return out


# -- samplers ----------------------------------------------------------------------------------------------------------
class HFSampler:
    """The stage's own model; loaded on first use through `load() -> (model, tokenizer)` when not given."""

    kind = "hf"

    def __init__(self, model=None, tokenizer=None, load: Callable[[], tuple] | None = None,
                 load_tokenizer: Callable[[], object] | None = None):
        self._model, self._tokenizer, self._load, self._load_tokenizer = model, tokenizer, load, load_tokenizer

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def model(self):
        if self._model is None:
            if self._load is None:
                raise RuntimeError("HFSampler: no model and nothing to load it with")
            self._model, tok = self._load()
            if self._tokenizer is None:
                self._tokenizer = tok
        return self._model

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            if self._load_tokenizer is not None:
                self._tokenizer = self._load_tokenizer()
            else:
                _ = self.model
        return self._tokenizer

    def take(self) -> tuple | None:
        """(model, tokenizer) when the model was loaded, handed over (the sampler forgets them), else None."""
        if self._model is None:
            return None
        out, self._model = (self._model, self.tokenizer), None
        return out

    def close(self) -> None:
        self._model = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _round_up(n: int, step: int = 1024) -> int:
    return -(-n // step) * step


class ServedSampler:
    """Self-edits from an OpenAI-compatible completions server: the spec's running one (`base_url`), or one this
    sampler starts on first use (`serve`) and stops on `close`."""

    kind = "openai"

    def __init__(self, backend: OpenAIBackend, model_spec, model_dir: Path, adapter_dir: Path | None, seed: int,
                 tokenizer=None, env: Mapping[str, str] | None = None, sleep: Callable[[float], None] = time.sleep):
        self.backend, self.model_spec, self.model_dir = backend, model_spec, Path(model_dir)
        self.adapter_dir = None if adapter_dir is None else Path(adapter_dir).resolve()
        self.seed, self._tokenizer, self._env, self._sleep = seed, tokenizer, env, sleep
        self.server: ManagedServer | None = None
        self.client: CompletionsClient | None = None
        self.model_name: str | None = None

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_spec, self.model_dir)
        return self._tokenizer

    def _client(self, base_url: str) -> CompletionsClient:
        b = self.backend
        return CompletionsClient(base_url, timeout_s=b.timeout_s, max_retries=b.max_retries,
                                 max_concurrency=b.max_concurrency, api_key_env=b.api_key_env, env=self._env,
                                 sleep=self._sleep)

    def _start(self, longest_prompt: int, max_new_tokens: int) -> None:
        b = self.backend
        if b.base_url is not None:
            self.client = self._client(b.base_url)
            listed = self.client.call("GET", "/models").get("data", [])
            names = [m.get("id") for m in listed if isinstance(m, dict)]
            if not names:
                raise UserError(f"self_edit.backend.base_url: {b.base_url} lists no model")
            if b.model is not None and b.model not in names:
                raise UserError(f"self_edit.backend.model: {b.model!r} is not served at {b.base_url} (it serves "
                                f"{', '.join(map(str, names))})")
            self.model_name = b.model or names[0]
            if self.adapter_dir is not None:
                self.model_name = self._load_adapter(names)
            return
        from seal_repro.models import name_or_path

        serve = b.serve
        port = serve.port or free_port(serve.host)
        lora: list[str] = []
        if self.adapter_dir is not None:
            rank = lora_rank(self.adapter_dir)
            max_rank = next((r for r in VLLM_LORA_RANKS if r >= rank), rank)
            lora = ["--enable-lora", "--max-lora-rank", str(max_rank), "--lora-modules",
                    f"{LORA_NAME}={self.adapter_dir}"]
        fields = {"model": name_or_path(self.model_dir), "host": serve.host, "port": port,
                  "served_model_name": BASE_NAME, "dtype": self.model_spec.dtype, "seed": self.seed,
                  "max_model_len": serve.max_model_len or _round_up(longest_prompt + max_new_tokens)}
        command = VLLM_COMMAND if serve.command == "vllm" else serve.command
        self.server = ManagedServer(serve_argv(command, fields, lora), serve.host, port, serve.startup_timeout_s)
        self.server.start()
        self.client = self._client(self.server.base_url)
        self.model_name = LORA_NAME if self.adapter_dir is not None else BASE_NAME

    def _load_adapter(self, served: list) -> str:
        """The adapter's name on a running server, loading it there first when it is not yet served."""
        h = hashlib.sha256()
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            h.update((self.adapter_dir / name).read_bytes())
        name = f"{LORA_NAME}-{h.hexdigest()[:16]}"
        if name not in served:
            self.client.call("POST", "/load_lora_adapter", {"lora_name": name, "lora_path": str(self.adapter_dir)})
        return name

    def generate(self, prompts: Sequence[str], *, max_new_tokens: int, temperature: float, top_p: float,
                 seed: int) -> list[dict]:
        """One row {text, tokens, truncated} per prompt, in order. Equal prompts go as one request with n = their
        count, seeded `seed + the first one's position` (so the k copies of a prompt draw k different samples)."""
        tok = self.tokenizer
        ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if self.client is None:
            self._start(max((len(i) for i in ids), default=0), max_new_tokens)
        groups: dict[str, list[int]] = {}
        for i, p in enumerate(prompts):
            groups.setdefault(p, []).append(i)
        order = list(groups.values())
        requests = [{"model": self.model_name, "prompt": ids[g[0]], "n": len(g), "max_tokens": max_new_tokens,
                     "temperature": temperature, "top_p": top_p, "seed": seed + g[0]} for g in order]
        replies = self.client.completions(requests)
        rows: list[dict | None] = [None] * len(prompts)
        for g, reply in zip(order, replies):
            choices = sorted(reply.get("choices") or [], key=lambda c: c.get("index", 0))
            if len(choices) != len(g):
                raise UserError(f"self_edit.backend: the server returned {len(choices)} completions for n={len(g)}")
            for i, c in zip(g, choices):
                text = c.get("text") or ""
                truncated = c.get("finish_reason") == "length"
                n = max_new_tokens if truncated else len(tok(text, add_special_tokens=False)["input_ids"])
                rows[i] = {"text": text, "tokens": n, "truncated": truncated}
        return rows

    def close(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self.client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_sampler(spec, model_dir: Path, policy_dir: Path | None = None, *, model=None, tokenizer=None,
                 load: Callable[[], tuple] | None = None, backend=None):
    """The sampler `spec.self_edit.backend` asks for (a context manager: a started server stops at its end), over
    the base model in `model_dir` with the policy adapter `policy_dir` (None: the base model). hf: `model`/
    `tokenizer` when the caller holds them, else loaded by `load()` on first use (the tokenizer alone, without the
    model, when only prompts are rendered)."""
    backend = backend or getattr(spec.self_edit, "backend", None) or HFBackend()
    if backend.kind == "hf":
        return HFSampler(model, tokenizer, load=load,
                         load_tokenizer=None if tokenizer is not None else lambda: load_tokenizer(spec.model, model_dir))
    return ServedSampler(backend, spec.model, model_dir, policy_dir, seed=spec.seed, tokenizer=tokenizer)


def as_sampler(model, tokenizer):
    """A sampler from what a domain's sampling function was given: a sampler as it is, a model as an HFSampler."""
    return model if isinstance(model, (HFSampler, ServedSampler)) else HFSampler(model, tokenizer)


__all__ = ["BASE_NAME", "CompletionsClient", "HFSampler", "LORA_NAME", "ManagedServer", "ServedSampler",
           "VLLM_COMMAND", "as_sampler", "free_port", "load_tokenizer", "open_sampler", "serve_argv"]
