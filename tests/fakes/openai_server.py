"""A fake OpenAI-compatible API: a real HTTP server the real ``openai`` client talks to.

:class:`FakeOpenAI` serves ``POST /v1/chat/completions`` and ``POST /v1/embeddings`` in
OpenAI's wire format from a thread of the test process (stdlib ``ThreadingHTTPServer``),
so the client's request building, response parsing, timeouts and error mapping all run
for real. It is scriptable:

- chat answers: :meth:`FakeOpenAI.answer` maps a marker (a substring of the user
  message, e.g. a phrase of the transcript) to the assistant's content, the latest
  marker first; the default is ``{"memories": []}``;
- embeddings: deterministic per text (a vector seeded by the text's sha256), deliberately
  NOT unit length, so a client that forgets to normalise is caught; both ``float`` and
  ``base64`` encodings;
- failures: :meth:`FakeOpenAI.fail` injects ``500``, ``429``, ``400``, ``slow`` (answers
  after ``slow_s``, beyond the client's timeout) or ``malformed`` (a 200 whose content is
  not what was asked for), for the next ``times`` requests or until :meth:`recover`;
- a request log (:attr:`FakeOpenAI.requests`): every body received, failed or not, to
  assert what left the process and how many calls were made.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import numpy as np
import orjson

CHAT = "/v1/chat/completions"
EMBEDDINGS = "/v1/embeddings"
FAILURES = ("500", "429", "400", "slow", "malformed")
EMPTY_ANSWER = '{"memories": []}'


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    path: str
    body: dict[str, Any]
    raw: str
    status: int


@dataclass
class _Failure:
    kind: str
    path: str | None
    remaining: int | None  # None: until recover()


def fake_vector(text: str, dimension: int) -> list[float]:
    """The fake's embedding of a text: deterministic, length 3 (not unit), never zero."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    vector = np.random.default_rng(seed).standard_normal(dimension)
    scaled: list[float] = (3.0 * vector / np.linalg.norm(vector)).tolist()
    return scaled


class FakeOpenAI:
    """A scriptable OpenAI-compatible server on 127.0.0.1 (a free port), for tests."""

    def __init__(self, *, dimension: int = 16, slow_s: float = 2.0) -> None:
        self.dimension = dimension
        self.slow_s = slow_s
        self._lock = threading.Lock()
        self._answers: list[tuple[str, str]] = []
        self._failures: list[_Failure] = []
        self._requests: list[Recorded] = []
        self._closing = threading.Event()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                status, payload, headers = fake._handle(self.path, raw)
                body = orjson.dumps(payload) if not isinstance(payload, bytes) else payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                # The client may have given up (its timeout): nothing to answer then.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the request log is the record

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-openai", daemon=True
        )

    # -- life cycle -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """What ``MEMSTREAM_OPENAI_BASE_URL`` should be."""
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def start(self) -> FakeOpenAI:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- scripting --------------------------------------------------------------------

    def answer(self, marker: str, content: str | dict[str, Any]) -> None:
        """Answer chat requests whose user message contains ``marker`` with ``content``
        (a dict is sent as its JSON). The marker given last wins, so a test can change
        the model's mind."""
        text = content if isinstance(content, str) else orjson.dumps(content).decode()
        with self._lock:
            self._answers.insert(0, (marker, text))

    def fail(self, kind: str, *, times: int | None = None, path: str | None = None) -> None:
        """Fail the next ``times`` requests (None: until `recover`) to ``path`` (``CHAT``,
        ``EMBEDDINGS``, None for both) in the given way (one of :data:`FAILURES`)."""
        if kind not in FAILURES:
            raise ValueError(f"unknown failure {kind!r}; one of {FAILURES}")
        with self._lock:
            self._failures.append(_Failure(kind, path, times))

    def recover(self) -> None:
        """Stop failing."""
        with self._lock:
            self._failures.clear()

    @property
    def requests(self) -> list[Recorded]:
        with self._lock:
            return list(self._requests)

    def calls(self, path: str | None = None) -> int:
        """Requests received (to ``path``, or to any)."""
        return sum(1 for r in self.requests if path is None or r.path == path)

    def clear_log(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- serving ----------------------------------------------------------------------

    def _handle(self, path: str, raw: str) -> tuple[int, Any, dict[str, str]]:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = {}
        failure = self._next_failure(path)
        status = _STATUS.get(failure, 200) if failure else 200
        with self._lock:
            self._requests.append(Recorded(path, body, raw, status))
        if path not in (CHAT, EMBEDDINGS):
            return 404, _error("not_found", f"no route {path}"), {}
        if failure == "slow":
            self._closing.wait(self.slow_s)
        elif failure in ("500", "429", "400"):
            headers = {"retry-after-ms": "1"} if failure == "429" else {}
            return status, _error(failure, f"injected {failure}"), headers
        if path == CHAT:
            content = "this is {not json" if failure == "malformed" else self._chat(body)
            return 200, _chat_completion(body.get("model", "fake"), content), {}
        inputs = body.get("input", [])
        inputs = [inputs] if isinstance(inputs, str) else list(inputs)
        if failure == "malformed":
            inputs = inputs[:-1]  # one embedding short: the client must notice
        return 200, self._embeddings(body, inputs), {}

    def _next_failure(self, path: str) -> str | None:
        with self._lock:
            for failure in self._failures:
                if failure.path is not None and failure.path != path:
                    continue
                if failure.remaining is not None:
                    if failure.remaining <= 0:
                        continue
                    failure.remaining -= 1
                return failure.kind
        return None

    def _chat(self, body: dict[str, Any]) -> str:
        said = " ".join(
            str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "user"
        )
        with self._lock:
            for marker, content in self._answers:
                if marker in said:
                    return content
        return EMPTY_ANSWER

    def _embeddings(self, body: dict[str, Any], inputs: list[str]) -> dict[str, Any]:
        encoding = body.get("encoding_format", "float")
        data = []
        for index, text in enumerate(inputs):
            vector = fake_vector(str(text), self.dimension)
            embedding: Any = vector
            if encoding == "base64":
                embedding = base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(len(str(t).split()) for t in inputs)
        return {
            "object": "list",
            "data": data,
            "model": body.get("model", "fake"),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


_STATUS = {"500": 500, "429": 429, "400": 400}


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "fake_error", "param": None, "code": code}}


def _chat_completion(model: str, content: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-fake-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
