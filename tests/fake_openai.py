"""A deliberately misbehaving OpenAI-compatible `/chat/completions` server on 127.0.0.1, for judge tests.

`server.script` is a list of actions answered in order, the last one repeating: ("ok", body bytes),
("err", status, body bytes, headers), ("sleep", seconds) (never answers: the client times out), or a
callable (request body, request headers) -> one of those. Every request is recorded in `server.requests`.

Import the fixtures into a test module to use them: `from fake_openai import chat, no_proxy, server`.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest


def chat(content: str) -> bytes:
    """A well-formed chat completion whose assistant message is `content`."""
    return json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


class Server:
    """Answers each POST with the next scripted action; the last one repeats."""

    def __init__(self):
        self.script, self.requests, self.lock = [], [], threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    action = server.script.pop(0) if len(server.script) > 1 else server.script[0]
                if callable(action):
                    action = action(body, self.headers)
                kind, *args = action
                if kind == "sleep":
                    time.sleep(args[0])
                    return
                status, payload, headers = (200, args[0], {}) if kind == "ok" else args
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    # A proxy set in the environment would swallow requests meant for 127.0.0.1.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()
