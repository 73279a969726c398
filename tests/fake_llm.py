"""A local fake LLM server speaking the OpenAI Chat-Completions and Gemini generateContent wire protocols,
so tests run the real SDK clients against it (a test helper, not a test file).

    with FakeLLM(lambda record: "answer") as fake:
        monkeypatch.setenv("OPENAI_BASE_URL", fake.openai_base_url)   # Authorization: Bearer <key>
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)        # x-goog-api-key: <key>

A wrong key gets OpenAI's 401 `invalid_api_key` error, or for Gemini 401 UNAUTHENTICATED with reason
API_KEY_INVALID (the real Gemini API answers 400 INVALID_ARGUMENT with that reason; 401 keeps the status
meaning plain). An `Answer` with `retry_after` sends both `Retry-After` (whole seconds) and `retry-after-ms`,
which the OpenAI SDK prefers, so its retries can wait milliseconds; the Gemini SDK ignores both.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

_GEMINI_PATH = re.compile(r"^/(?P<version>[^/]+)/models/(?P<model>[^/:]+):generateContent$")
_OPENAI_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "permission_error",
                 404: "invalid_request_error", 429: "rate_limit_exceeded"}
_GOOGLE_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                  429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


@dataclass(frozen=True)
class Answer:
    """What the server replies: `text` (and `reasoning`) with status 200, else an error whose message is
    `text` (or a default)."""

    text: str = ""
    status: int = 200
    reasoning: str = ""
    retry_after: float | None = None  # seconds, sent on error replies


def tokens(text: str) -> int:
    return math.ceil(len(text) / 4)


class FakeLLM:
    """The server on 127.0.0.1 (a free port), serving from a daemon thread while the context is open.

    `responder(record)` returns the answer text or an `Answer`; a record is {"protocol": "openai"|"gemini",
    "model", "system", "messages": [(role, text), ...] with Gemini's "model" role as "assistant", "schema"
    (dict or None), "body" (the raw JSON body), "path", "authorized"}. Every request is recorded in
    `requests`, failed ones included; the responder is not called for a wrong key.
    """

    def __init__(self, responder: Callable[[dict], Answer | str], key: str = "test-key"):
        self.responder, self.key = responder, key
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.fake = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.openai_base_url = self.url + "/v1"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FakeLLM:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def record(self, record: dict) -> None:
        with self._lock:
            self.requests.append(record)


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeLLM/1"

    def log_message(self, format, *args):  # keep test output quiet
        pass

    def do_POST(self):
        fake: FakeLLM = self.server.fake  # type: ignore[attr-defined]
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        path = self.path.split("?", 1)[0]
        gemini = _GEMINI_PATH.match(path)
        if path == "/v1/chat/completions":
            record = _openai_record(body)
            authorized = self.headers.get("Authorization") == f"Bearer {fake.key}"
        elif gemini:
            record = _gemini_record(body, gemini["model"])
            authorized = self.headers.get("x-goog-api-key") == fake.key
        else:
            error = {"code": 404, "message": f"no route {path}", "status": "NOT_FOUND"}
            return self._send(404, {"error": error})
        record.update(body=body, path=path, authorized=authorized)
        fake.record(record)
        if not authorized:
            sent = self.headers.get("Authorization") or self.headers.get("x-goog-api-key") or ""
            # Like the real OpenAI API, echo (part of) the key sent, so tests can check it is scrubbed.
            return self._error(record["protocol"], 401, f"Incorrect API key provided: {sent}", None)
        try:
            answer = fake.responder(record)
        except Exception as e:  # the test's responder failed: say so as a server error
            answer = Answer(f"responder raised {type(e).__name__}: {e}", status=500)
        if isinstance(answer, str):
            answer = Answer(answer)
        if answer.status != 200:
            return self._error(record["protocol"], answer.status, answer.text, answer.retry_after)
        reply = _openai_reply if record["protocol"] == "openai" else _gemini_reply
        self._send(200, reply(record, answer))

    def _error(self, protocol: str, status: int, message: str, retry_after: float | None) -> None:
        headers = {}
        if retry_after is not None:
            headers = {"Retry-After": str(math.ceil(retry_after)),
                       "retry-after-ms": str(round(retry_after * 1000))}
        if protocol == "openai":
            code = "invalid_api_key" if status == 401 else None
            error = {"message": message or f"HTTP {status}",
                     "type": _OPENAI_TYPES.get(status, "server_error"), "param": None, "code": code}
        else:
            error = {"code": status, "message": message or f"HTTP {status}",
                     "status": _GOOGLE_STATUS.get(status, "UNKNOWN")}
            if status == 401:
                error["message"] = "API key not valid. Please pass a valid API key."
                error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                                     "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]
        self._send(status, {"error": error}, headers)

    def _send(self, status: int, payload: dict, headers: dict | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass


def _text(content) -> str:
    """OpenAI message content: a string or a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content or [] if isinstance(part, dict))


def _openai_record(body: dict) -> dict:
    system = "".join(_text(m.get("content")) for m in body.get("messages", [])
                     if m.get("role") in ("system", "developer"))
    messages = [(m["role"], _text(m.get("content"))) for m in body.get("messages", [])
                if m.get("role") not in ("system", "developer")]
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    return {"protocol": "openai", "model": body.get("model", ""), "system": system, "messages": messages,
            "schema": schema}


def _gemini_record(body: dict, model: str) -> dict:
    def text(content: dict | None) -> str:
        return "".join(part.get("text", "") for part in (content or {}).get("parts", []))

    messages = [("assistant" if c.get("role") == "model" else "user", text(c))
                for c in body.get("contents", [])]
    config = body.get("generationConfig") or {}
    schema = config.get("responseJsonSchema") or config.get("responseSchema")
    return {"protocol": "gemini", "model": model, "system": text(body.get("systemInstruction")),
            "messages": messages, "schema": schema}


def _prompt_tokens(record: dict) -> int:
    return tokens(record["system"] + "".join(text for _, text in record["messages"]))


def _openai_reply(record: dict, answer: Answer) -> dict:
    message = {"role": "assistant", "content": answer.text}
    if answer.reasoning:
        message["reasoning_content"] = answer.reasoning
    prompt, completion = _prompt_tokens(record), tokens(answer.text) + tokens(answer.reasoning)
    return {"id": f"chatcmpl-fake-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
            "model": record["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


def _gemini_reply(record: dict, answer: Answer) -> dict:
    parts = [{"text": answer.reasoning, "thought": True}] if answer.reasoning else []
    parts.append({"text": answer.text})
    prompt, candidates, thoughts = _prompt_tokens(record), tokens(answer.text), tokens(answer.reasoning)
    usage = {"promptTokenCount": prompt, "candidatesTokenCount": candidates,
             "totalTokenCount": prompt + candidates + thoughts}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    candidate = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": record["model"]}
