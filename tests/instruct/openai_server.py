"""A real HTTP server on 127.0.0.1 that speaks the OpenAI chat-completions protocol.

Tests and benchmarks talk to it through the real `openai` client (no mock of the client).
Faults are injected by *markers*: a request whose messages contain a marker string takes the
next fault queued for that marker ("429", "500", "slow", "malformed", "refusal", "drop"); once
the queue is empty it is answered normally. Markers keep fault injection deterministic under
concurrency, which a per-request counter would not.

Run standalone (benchmarks start it in a separate process so it does not share the GIL):
    python tests/instruct/openai_server.py --port 0     # prints "PORT <n>" then serves
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REFUSAL_TEXT = "I'm sorry, but as an AI language model I cannot interpret medical images."


# Replies that parse as JSON but are not chat completions (fault name -> body).
MALFORMED_SHAPES: dict[str, Any] = {
    "no_choices": {"id": "x"},
    "choices_not_a_list": {"id": "x", "choices": "oops"},
    "empty_choice": {"id": "x", "choices": [{}]},
    "message_not_an_object": {"id": "x", "choices": [{"index": 0, "message": "text"}]},
    "content_not_text": {"id": "x", "choices": [{"index": 0, "message": {"content": 7}}]},
}


def default_answer(messages: list[dict[str, Any]]) -> str:
    """A grounded two-turn conversation built from the last user message (deterministic)."""
    text = str(messages[-1].get("content", "")) if messages else ""
    body = text.split("Caption:", 1)[-1] if "Caption:" in text else text
    body = body.split("Mentions:", 1)[0].strip()
    first = re.split(r"(?<=[.!?])\s", body, maxsplit=1)[0].strip() or "an image"
    return (
        "User: What does this image show?\n"
        f"Assistant: The image shows: {first}\n"
        "User: Is anything else notable?\n"
        "Assistant: The remaining structures look as expected for this kind of image."
    )


class FakeOpenAIServer:
    def __init__(
        self,
        faults: dict[str, list[str]] | None = None,
        *,
        answer: Callable[[list[dict[str, Any]]], str] = default_answer,
        slow_s: float = 2.0,
        delay_s: float = 0.0,
        retry_after: str = "0.05",
        port: int = 0,
        quiet: bool = True,
    ) -> None:
        self.faults = {marker: deque(kinds) for marker, kinds in (faults or {}).items()}
        self.answer = answer
        self.slow_s = slow_s
        self.delay_s = delay_s  # every answer waits this long (concurrency and crash tests)
        self.inflight = 0
        self.max_inflight = 0
        self.prompt_tokens = 0  # usage reported in 200 answers
        self.completion_tokens = 0
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.requests = 0  # every POST to /v1/chat/completions
        self.statuses: Counter[int] = Counter()
        self.bodies: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self.keep_bodies = True
        self.served_event = threading.Event()
        self.stop_after: int | None = None
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # header and body go out in two writes

            def log_message(self, *args: Any) -> None:  # silence per-request logging
                if not quiet:
                    super().log_message(*args)

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)
                with owner.lock:
                    owner.statuses[status] += 1

            def do_GET(self) -> None:  # noqa: N802 - counters for benchmarks in another process
                if self.path.rstrip("/") != "/stats":
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                with owner.lock:
                    stats = {"requests": owner.requests, "statuses": dict(owner.statuses)}
                self._send(200, json.dumps(stats).encode())

            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(404, b'{"error": {"message": "not found"}}')
                    return
                payload = json.loads(raw)
                messages = payload.get("messages", [])
                joined = json.dumps(messages)
                with owner.lock:
                    owner.requests += 1
                    if owner.keep_bodies:
                        owner.bodies.append(payload)
                        owner.auth_headers.append(self.headers.get("Authorization", ""))
                    fault = None
                    for marker, queue in owner.faults.items():
                        if queue and marker in joined:
                            fault = queue.popleft()
                            break
                with owner.lock:
                    owner.inflight += 1
                    owner.max_inflight = max(owner.max_inflight, owner.inflight)
                try:
                    self._respond(fault, payload, messages, joined)
                finally:
                    with owner.lock:
                        owner.inflight -= 1

            def _respond(self, fault, payload, messages, joined) -> None:
                if owner.delay_s:
                    time.sleep(owner.delay_s)
                if fault == "429":
                    body = b'{"error": {"message": "rate limited", "type": "rate_limit"}}'
                    self._send(429, body, {"Retry-After": owner.retry_after})
                    return
                if fault == "500":
                    self._send(500, b'{"error": {"message": "internal error"}}')
                    return
                if fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault == "slow":
                    time.sleep(owner.slow_s)
                if fault == "malformed":
                    self._send(200, b'{"id": "x", "choices": [ {"message": ')
                    return
                if fault in MALFORMED_SHAPES:  # valid JSON, not the protocol's shape
                    self._send(200, json.dumps(MALFORMED_SHAPES[fault]).encode())
                    return
                content = REFUSAL_TEXT if fault == "refusal" else owner.answer(messages)
                prompt_tokens = max(1, len(joined) // 4)
                completion_tokens = max(1, len(content) // 4)
                with owner.lock:
                    owner.prompt_tokens += prompt_tokens
                    owner.completion_tokens += completion_tokens
                response = {
                    "id": f"chatcmpl-{owner.requests}",
                    "object": "chat.completion",
                    "created": 0,
                    "model": payload.get("model", ""),
                    "choices": [
                        {
                            "index": 0,
                            "finish_reason": "stop",
                            "message": {"role": "assistant", "content": content},
                        }
                    ],
                    "usage": {
                        "prompt_tokens": prompt_tokens,
                        "completion_tokens": completion_tokens,
                        "total_tokens": prompt_tokens + completion_tokens,
                    },
                }
                self._send(200, json.dumps(response).encode())

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> FakeOpenAIServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server = FakeOpenAIServer(port=args.port)
    server.keep_bodies = False
    print(f"PORT {server.port}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.httpd.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
