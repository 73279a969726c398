"""A minimal OpenAI-compatible Chat Completions server over a local model (a model directory or
a GGUF file; transformers `generate`), so a trained or small model runs as the LLM agent
`openai:NAME` with `$OPENAI_BASE_URL` set to its `/v1` (or, for the local models of
`agents.llm.local`, as a preset that serves itself). For tests and CPU runs; real serving is vLLM's
(`vllm serve DIR`).

Routes: `GET /v1/models`, `POST /v1/chat/completions` with what the official `openai` SDK sends:
`model` (must be the served name), `messages` (text contents or text parts), `max_completion_tokens`
or `max_tokens` (capped by the server's `max_new_tokens` and by what the context leaves),
`temperature` (0 = greedy; default 1), `top_p`, `seed` (sampling is seeded per request: a repeated
request gets the same reply), and `response_format`: `json_schema` (its `schema`) or `json_object`
are enforced by constrained decoding (`agents.llm.grammar`: every token keeps the reply a prefix of
valid JSON under the schema), `text` is free. Other fields (`reasoning_effort`) are accepted and
ignored; `n` > 1 and `stream` are refused with a 400. Replies carry `usage` token counts. Requests
are answered one at a time (one model); no API key is checked, so it listens on 127.0.0.1 unless
told otherwise.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from agents.policy.lm_model import load_model


class RequestError(ValueError):
    """A request the server refuses: (HTTP status, message)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ChatServer:
    """Serves the model at `model_path` (a directory or a .gguf file) as `name` (default: the
    directory's name, or the file's without .gguf) on host:port (port 0: a free one). Use as a
    context manager to serve from a daemon thread."""

    def __init__(self, model_path: Path, name: str | None = None, host: str = "127.0.0.1", port: int = 8000,
                 max_new_tokens: int = 512):
        self.model, self.tokenizer = load_model(model_path)
        self.model.eval()
        path = Path(model_path)
        self.name = name or (path.stem if path.suffix == ".gguf" else path.name)
        self.max_new_tokens = max_new_tokens
        self.requests = 0  # chat completions answered
        self._grammar = None  # the tokenizer's JsonGrammar, built on the first constrained request
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer((host, port), _Handler)
        self._http.daemon_threads = True
        self._http.chat = self  # type: ignore[attr-defined]
        self.base_url = f"http://{host}:{self._http.server_address[1]}/v1"
        self._thread: threading.Thread | None = None

    def serve_forever(self) -> None:
        self._http.serve_forever(poll_interval=0.1)

    def __enter__(self) -> ChatServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": 0,
                                            "owned_by": "llmconfig-bench"}]}

    def complete(self, body: dict) -> dict:
        """The chat.completion object answering a request body."""
        import torch

        if body.get("model") != self.name:
            raise RequestError(404, f"The model `{body.get('model')}` does not exist; this server serves "
                                    f"`{self.name}`")
        if body.get("stream"):
            raise RequestError(400, "stream is not supported by this server")
        if int(body.get("n") or 1) != 1:
            raise RequestError(400, "n must be 1 on this server")
        messages = [{"role": m["role"], "content": _text(m.get("content"))} for m in _messages(body)]
        limit = body.get("max_completion_tokens") or body.get("max_tokens") or self.max_new_tokens
        temperature = float(body.get("temperature", 1.0))
        schema = _schema(body.get("response_format"))
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,
                                                 return_tensors="pt")
        prompt_tokens = int(ids["input_ids"].shape[1])
        limit = min(int(limit), self.max_new_tokens)
        context = getattr(self.model.config, "max_position_embeddings", None)
        if context is not None:
            if prompt_tokens >= context:
                raise RequestError(400, f"the prompt has {prompt_tokens} tokens; the model's context is "
                                        f"{context}")
            limit = min(limit, context - prompt_tokens)
        sampling = ({"do_sample": True, "temperature": temperature, "top_p": float(body.get("top_p", 1.0)),
                     "top_k": 0} if temperature > 0 else {"do_sample": False})
        with self._lock, torch.no_grad():
            if schema is not None:
                sampling["prefix_allowed_tokens_fn"] = self._constrained(schema, prompt_tokens)
            if body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            out = self.model.generate(**ids, max_new_tokens=limit, pad_token_id=self.tokenizer.pad_token_id,
                                      eos_token_id=self.tokenizer.eos_token_id, **sampling)
            self.requests += 1
        completion = out[0, prompt_tokens:].tolist()
        stopped = self.tokenizer.eos_token_id in completion
        if stopped:
            completion = completion[: completion.index(self.tokenizer.eos_token_id) + 1]
        text = self.tokenizer.decode(completion, skip_special_tokens=True)
        return {"id": f"chatcmpl-{time.time_ns()}", "object": "chat.completion", "created": int(time.time()),
                "model": self.name,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop" if stopped else "length", "logprobs": None}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": len(completion),
                          "total_tokens": prompt_tokens + len(completion)}}

    def _constrained(self, schema: dict, prompt_tokens: int):
        from agents.llm.grammar import JsonGrammar

        if self._grammar is None:
            self._grammar = JsonGrammar(self.tokenizer)
        try:
            return self._grammar.allowed(schema, prompt_tokens)
        except Exception as exc:  # lm-format-enforcer's own errors for a schema it cannot enforce
            raise RequestError(400, f"response_format: cannot enforce this JSON schema: {exc}") from None


def _schema(response_format) -> dict | None:
    """The JSON schema a `response_format` asks for: its schema (`json_schema`), any object
    (`json_object`), or None (`text`, or none given)."""
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        if not isinstance(schema, dict):
            raise RequestError(400, "response_format.json_schema.schema must be a JSON schema object")
        return schema
    if kind == "json_object":
        return {"type": "object"}
    if kind == "text":
        return None
    raise RequestError(400, "response_format.type must be one of text, json_object, json_schema")


def _messages(body: dict) -> list[dict]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(
            isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        raise RequestError(400, "messages must be a non-empty list of {role, content} objects")
    return messages


def _text(content) -> str:
    """A message's content: a string, or the text of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    raise RequestError(400, "message content must be a string or a list of text parts")


class _Handler(BaseHTTPRequestHandler):
    server_version = "bench-lm/1"

    def log_message(self, format, *args):  # requests are counted, not logged line by line
        pass

    def do_GET(self):
        if self.path.split("?", 1)[0] == "/v1/models":
            return self._send(200, self.server.chat.models())  # type: ignore[attr-defined]
        self._error(RequestError(404, f"no route GET {self.path}"))

    def do_POST(self):
        if self.path.split("?", 1)[0] != "/v1/chat/completions":
            return self._error(RequestError(404, f"no route POST {self.path}"))
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            if not isinstance(body, dict):
                raise RequestError(400, "the request body must be a JSON object")
            self._send(200, self.server.chat.complete(body))  # type: ignore[attr-defined]
        except json.JSONDecodeError as exc:
            self._error(RequestError(400, f"the request body is not JSON: {exc}"))
        except RequestError as exc:
            self._error(exc)
        except (TypeError, ValueError) as exc:  # a field of the wrong type
            self._error(RequestError(400, f"bad request: {exc}"))

    def _error(self, exc: RequestError) -> None:
        kind = "not_found_error" if exc.status == 404 else "invalid_request_error"
        self._send(exc.status, {"error": {"message": str(exc), "type": kind, "param": None, "code": None}})

    def _send(self, status: int, payload: dict) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
