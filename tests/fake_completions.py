"""A loopback OpenAI-compatible completions server speaking the endpoints seal_repro/sampling.py calls, for tests.

GET /v1/models lists `base` (or --served-model-name) and every LoRA it serves; POST /v1/completions answers each
request deterministically: choice j's text is a function of (model, prompt, seed + j), `max_tokens` words at most
(finish_reason "length" when it hits the cap, else "stop"); POST /v1/load_lora_adapter adds a LoRA name (as vLLM
with runtime LoRA updating). `fail` makes the next that many completion requests answer HTTP 500.

In a test: `server = FakeCompletions(); ...; server.close()` (every request is kept in `server.requests`). As a
program (what a spec's `serve.command` starts): `python fake_completions.py --port P [--served-model-name N]
[--enable-lora --max-lora-rank R --lora-modules name=path ...] [--fail-first N]`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WORDS = ("the", "river", "bridge", "town", "was", "built", "in", "paris", "france", "war", "year", "capital")


def completion_text(model: str, prompt, seed: int, max_tokens: int) -> tuple[str, str]:
    """(text, finish_reason) the fake answers: deterministic in its inputs; about one request in four hits the
    token cap."""
    h = hashlib.sha256(json.dumps([model, prompt, seed]).encode()).digest()
    n = h[0] % (max_tokens + max(1, max_tokens // 3)) + 1
    words = [WORDS[b % len(WORDS)] for b in (h * (1 + n // len(h)))[1 : n + 1]]
    if n >= max_tokens:
        return " ".join(words[:max_tokens]), "length"
    return " ".join(words), "stop"


class FakeCompletions:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, served_model_name: str = "base",
                 loras: dict[str, str] | None = None, fail: int = 0):
        self.models = [served_model_name, *(loras or {})]
        self.loras = dict(loras or {})
        self.fail = fail
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, payload: dict) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                if self.path.rstrip("/") == "/v1/models":
                    self._send(200, {"object": "list", "data": [{"id": m, "object": "model"} for m in server.models]})
                else:
                    self._send(404, {"error": "not found"})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "body": body})
                    failing = self.path.endswith("/completions") and server.fail > 0
                    if failing:
                        server.fail -= 1
                if failing:
                    self._send(500, {"error": "injected failure"})
                elif self.path.rstrip("/") == "/v1/completions":
                    if body["model"] not in server.models:
                        self._send(404, {"error": f"model {body['model']} not found"})
                        return
                    choices = []
                    for j in range(body.get("n", 1)):
                        text, reason = completion_text(body["model"], body["prompt"], body["seed"] + j,
                                                       body["max_tokens"])
                        choices.append({"index": j, "text": text, "finish_reason": reason})
                    self._send(200, {"object": "text_completion", "model": body["model"], "choices": choices,
                                     "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}})
                elif self.path.rstrip("/") == "/v1/load_lora_adapter":
                    with server.lock:
                        server.loras[body["lora_name"]] = body["lora_path"]
                        server.models.append(body["lora_name"])
                    self._send(200, {"status": "ok"})
                else:
                    self._send(404, {"error": "not found"})

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--served-model-name", default="base")
    p.add_argument("--enable-lora", action="store_true")
    p.add_argument("--max-lora-rank", type=int, default=16)
    p.add_argument("--lora-modules", nargs="*", default=[])
    p.add_argument("--fail-first", type=int, default=0)
    args = p.parse_args()
    loras = dict(m.split("=", 1) for m in args.lora_modules)
    if loras and not args.enable_lora:
        raise SystemExit("--lora-modules needs --enable-lora")
    for name, path in loras.items():
        rank = json.loads(open(f"{path}/adapter_config.json").read())["r"]
        if rank > args.max_lora_rank:
            raise SystemExit(f"LoRA {name} has rank {rank} > --max-lora-rank {args.max_lora_rank}")
    server = FakeCompletions(args.host, args.port, args.served_model_name, loras, args.fail_first)
    print(f"serving {server.models} at {server.url}", flush=True)
    try:
        server.thread.join()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
