"""Thin adapters from a provider-neutral `Request`/`Reply` to the official LLM SDKs.

`OpenAIProvider` speaks Chat Completions through `openai` (OpenAI itself, or any compatible server such as
vLLM, llama.cpp or Ollama via $OPENAI_BASE_URL); `GeminiProvider` speaks Gemini through `google-genai`.
Both leave retries, backoff and timeouts to the SDK and turn its errors into `LLMError`s whose messages
never contain an API key. The SDKs are imported when a provider is built, so importing this module is cheap.
"""

from __future__ import annotations

import json
import math
import os
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

from bench.errors import BenchError

EFFORTS = ("minimal", "low", "medium", "high")
ROLES = ("user", "assistant")
KEY_VARS = ("OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY")
THINKING_BUDGETS = {"minimal": 128, "low": 1024, "medium": 8192, "high": 24576}  # Gemini: effort -> tokens
GEMINI_DEFAULT_URL = "https://generativelanguage.googleapis.com"
_KEY_LIKE = re.compile(r"\b(?:sk-|AIza)[\w*.\-]+")  # OpenAI / Google key shapes, even when partly masked


@dataclass(frozen=True)
class Request:
    """One call: a system instruction, the conversation so far, and how to answer."""

    system: str
    messages: tuple[tuple[str, str], ...]  # (role, text), role "user" or "assistant", in order
    schema: dict | None = None  # JSON schema (an object) the answer must follow; None: free text
    temperature: float | None = None
    max_output_tokens: int | None = None
    reasoning_effort: str | None = None  # one of EFFORTS, or None (not sent)
    seed: int | None = None  # sampling seed where the provider takes one (the episode seed)

    def __post_init__(self):
        for role, _ in self.messages:
            if role not in ROLES:
                raise ValueError(f"message role must be one of {ROLES}, not {role!r}")
        if self.reasoning_effort is not None and self.reasoning_effort not in EFFORTS:
            raise ValueError(f"reasoning_effort must be one of {EFFORTS} or None, "
                             f"not {self.reasoning_effort!r}")

    def key(self) -> dict:
        """Every field as plain JSON values (for a cache key); equal requests give equal dicts."""
        return {"system": self.system, "messages": [[role, text] for role, text in self.messages],
                "schema": self.schema, "temperature": self.temperature,
                "max_output_tokens": self.max_output_tokens, "reasoning_effort": self.reasoning_effort,
                "seed": self.seed}


@dataclass(frozen=True)
class Reply:
    text: str  # the answer (JSON when the request had a schema)
    reasoning: str  # reasoning/thinking text the provider returned, "" if none
    tokens_in: int
    tokens_out: int  # completion tokens, reasoning tokens included


class LLMError(BenchError):
    """An LLM call failed; the message says which endpoint and model, and never holds a key."""


class LLMAuthError(LLMError):
    """The API key is missing or was rejected (HTTP 401/403); the message names the variable to set."""


class LLMUnavailableError(LLMError):
    """Network error, timeout, or 429/5xx still failing after the SDK's retries."""


def scrub(text: str, limit: int = 300) -> str:
    """`text` shortened to `limit` characters, with any API key from the environment (or key-like token)
    replaced by '***'."""
    for var in KEY_VARS:
        value = os.environ.get(var, "").strip()
        if value:
            text = text.replace(value, "***")
    text = _KEY_LIKE.sub("***", " ".join(text.split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Provider(ABC):
    name: str  # "openai" | "gemini"
    model: str

    @abstractmethod
    def complete(self, request: Request) -> Reply:
        """The model's reply to `request`; raises `LLMError` (or a subclass) on failure."""

    def _where(self, url: str) -> str:
        return f"{self.name} model {self.model!r} at {scrub(url)}"


class OpenAIProvider(Provider):
    """Chat Completions via the `openai` SDK.

    The SDK reads $OPENAI_API_KEY and $OPENAI_BASE_URL itself (default https://api.openai.com/v1) and sends
    `Authorization: Bearer <key>`; when only the base URL is set (local servers need no key) a placeholder
    key is sent. Reasoning text of compatible servers (vLLM, DeepSeek) is read from the message's extra
    field `reasoning_content` (or `reasoning`). `max_retries` and `timeout` (seconds) go to the SDK, whose
    backoff retries connection errors, timeouts, 408/409/429 and 5xx and honours Retry-After.
    A request without a schema asks for free text (for servers without structured output). A
    `base_url` given here (a server the agent started itself) replaces the environment's, and no
    key is sent to it.
    """

    name = "openai"

    def __init__(self, model: str, *, timeout: float = 120.0, max_retries: int = 4,
                 base_url: str | None = None):
        import openai

        reason = None if base_url else credentials("openai")
        if reason:
            raise LLMAuthError(f"the openai provider cannot run: {reason}")
        self.model, self.max_retries = model, max_retries
        # None: the SDK reads $OPENAI_API_KEY
        api_key = None if os.environ.get("OPENAI_API_KEY") and not base_url else "unused"
        self._client = openai.OpenAI(api_key=api_key, base_url=base_url, timeout=timeout,
                                     max_retries=max_retries)

    def complete(self, request: Request) -> Reply:
        import openai

        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": role, "content": text} for role, text in request.messages]
        kwargs: dict[str, Any] = {}
        if request.temperature is not None:
            kwargs["temperature"] = request.temperature
        if request.max_output_tokens is not None:
            kwargs["max_completion_tokens"] = request.max_output_tokens
        if request.reasoning_effort is not None:
            kwargs["reasoning_effort"] = request.reasoning_effort
        if request.seed is not None:
            kwargs["seed"] = request.seed
        if request.schema is not None:
            kwargs["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "answer", "schema": request.schema, "strict": True}}
        where = self._where(str(self._client.base_url))
        try:
            response = self._client.chat.completions.create(model=self.model, messages=messages, **kwargs)
        except openai.APIStatusError as e:
            raise self._status_error(e, where) from None
        except openai.APIConnectionError as e:  # includes APITimeoutError
            cause = f" ({scrub(str(e.__cause__), 160)})" if e.__cause__ else ""
            raise LLMUnavailableError(f"{where} is unreachable after {self.max_retries} retries: "
                                      f"{e.message}{cause}") from None
        except openai.OpenAIError as e:
            raise LLMError(f"{where} failed: {type(e).__name__}: {scrub(str(e))}") from None
        if not response.choices:
            raise LLMError(f"{where} returned no choices")
        message = response.choices[0].message
        extra = message.model_extra or {}
        reasoning = extra.get("reasoning_content") or extra.get("reasoning") or ""
        usage = response.usage
        return Reply(text=message.content or "", reasoning=str(reasoning),
                     tokens_in=(usage.prompt_tokens or 0) if usage else 0,
                     tokens_out=(usage.completion_tokens or 0) if usage else 0)

    def _status_error(self, e, where: str) -> LLMError:
        status = e.status_code
        if status in (401, 403):
            if os.environ.get("OPENAI_API_KEY"):
                return LLMAuthError(f"{where} rejected the API key (HTTP {status}): "
                                    "set $OPENAI_API_KEY to a valid key")
            return LLMAuthError(f"{where} requires an API key (HTTP {status}): set $OPENAI_API_KEY")
        body = e.body if isinstance(e.body, dict) else {}
        excerpt = scrub(str(body.get("message") or e.body or e.message))
        if status in (408, 429) or status >= 500:
            return LLMUnavailableError(f"{where} still answers HTTP {status} after up to {self.max_retries} "
                                       f"retries: {excerpt}")
        return LLMError(f"{where} refused the request (HTTP {status}): {excerpt}")


class GeminiProvider(Provider):
    """Gemini (Developer API, not Vertex AI) via the `google-genai` SDK.

    The SDK reads the key from $GOOGLE_API_KEY or $GEMINI_API_KEY (GOOGLE_API_KEY wins when both are set)
    and sends it as the `x-goog-api-key` header; it also honours $GOOGLE_GEMINI_BASE_URL (default
    https://generativelanguage.googleapis.com), so a proxy or test server needs no option here.
    `reasoning_effort` maps onto a thinking budget in tokens (`THINKING_BUDGETS`; accepted by Gemini 2.5
    and 3, whose `thinking_level` 2.5 lacks) with `include_thoughts=True`, and the thought parts become
    `Reply.reasoning`; without it no thinking config is sent (the model's default). Retries: the SDK's
    `HttpRetryOptions` with `max_retries + 1` attempts on 408/429/5xx, connection errors and timeouts,
    exponential backoff from `retry_delay` seconds (doubling, plus up to `retry_delay` of jitter; no
    Retry-After). `timeout` is in seconds (the SDK takes milliseconds).
    """

    name = "gemini"
    retry_delay = 1.0  # first backoff delay in seconds; a class attribute so tests can shorten it

    def __init__(self, model: str, *, timeout: float = 120.0, max_retries: int = 4):
        from google import genai
        from google.genai import types

        reason = credentials("gemini")
        if reason:
            raise LLMAuthError(f"the gemini provider cannot run: {reason}")
        self.model, self.max_retries = model, max_retries
        retry = types.HttpRetryOptions(attempts=max_retries + 1, initial_delay=self.retry_delay,
                                       jitter=self.retry_delay)
        options = types.HttpOptions(timeout=max(1, math.ceil(timeout * 1000)), retry_options=retry)
        self._client = genai.Client(vertexai=False, http_options=options)

    def complete(self, request: Request) -> Reply:
        from google.genai import errors, types

        contents = [types.Content(role="model" if role == "assistant" else "user",
                                  parts=[types.Part(text=text)]) for role, text in request.messages]
        config: dict[str, Any] = {"system_instruction": request.system or None,
                                  "temperature": request.temperature,
                                  "max_output_tokens": request.max_output_tokens, "seed": request.seed}
        if request.schema is not None:
            config.update(response_mime_type="application/json", response_json_schema=request.schema)
        if request.reasoning_effort is not None:
            budget = THINKING_BUDGETS[request.reasoning_effort]
            config["thinking_config"] = types.ThinkingConfig(include_thoughts=True, thinking_budget=budget)
        where = self._where(os.environ.get("GOOGLE_GEMINI_BASE_URL") or GEMINI_DEFAULT_URL)
        try:
            response = self._client.models.generate_content(model=self.model, contents=contents,
                                                            config=types.GenerateContentConfig(**config))
        except errors.APIError as e:
            raise self._status_error(e, where) from None
        except _transport_errors() as e:
            raise LLMUnavailableError(f"{where} is unreachable after {self.max_retries} retries: "
                                      f"{type(e).__name__}: {scrub(str(e), 160)}") from None
        if not response.candidates:
            feedback = response.prompt_feedback
            blocked = f" (blocked: {feedback.block_reason})" if feedback and feedback.block_reason else ""
            raise LLMError(f"{where} returned no candidates{blocked}")
        content = response.candidates[0].content
        parts = (content.parts if content else None) or []
        usage = response.usage_metadata
        return Reply(text="".join(p.text for p in parts if p.text and not p.thought),
                     reasoning="".join(p.text for p in parts if p.text and p.thought),
                     tokens_in=(usage.prompt_token_count or 0) if usage else 0,
                     tokens_out=((usage.candidates_token_count or 0) + (usage.thoughts_token_count or 0))
                     if usage else 0)

    def _status_error(self, e, where: str) -> LLMError:
        status = e.code or 0
        var = "GOOGLE_API_KEY" if os.environ.get("GOOGLE_API_KEY") else "GEMINI_API_KEY"
        # The real API answers an invalid key with 400 INVALID_ARGUMENT "API key not valid" (API_KEY_INVALID).
        bad_key = ("API_KEY_INVALID" in json.dumps(e.details, default=str)
                   or "API key not valid" in (e.message or ""))
        if status in (401, 403) or (status == 400 and bad_key):
            return LLMAuthError(f"{where} rejected the API key (HTTP {status}): set ${var} to a valid key")
        excerpt = scrub(f"{e.status or ''} {e.message or ''}".strip())
        if status in (408, 429) or status >= 500:
            return LLMUnavailableError(f"{where} still answers HTTP {status} after up to {self.max_retries} "
                                       f"retries: {excerpt}")
        return LLMError(f"{where} refused the request (HTTP {status}): {excerpt}")


def _transport_errors() -> tuple[type[Exception], ...]:
    """The network and timeout errors of the HTTP libraries google-genai may use (httpx2, else httpx)."""
    found: list[type[Exception]] = []
    for module in ("httpx2", "httpx"):
        try:
            found.append(__import__(module).TransportError)
        except ImportError:
            pass
    return tuple(found)


PROVIDERS: dict[str, type[Provider]] = {"openai": OpenAIProvider, "gemini": GeminiProvider}


def make_provider(name: str, model: str, **options) -> Provider:
    """The provider `name` ("openai" or "gemini") for `model`; `options` go to its constructor."""
    if name not in PROVIDERS:
        raise LLMError(f"unknown LLM provider {name!r}: choose one of {', '.join(PROVIDERS)}")
    return PROVIDERS[name](model, **options)


def credentials(name: str) -> str | None:
    """None if the environment lets provider `name` run, else a short reason saying what to set."""
    if name == "openai":
        ok = os.environ.get("OPENAI_API_KEY") or os.environ.get("OPENAI_BASE_URL")
        return None if ok else "set $OPENAI_API_KEY or $OPENAI_BASE_URL"
    if name == "gemini":
        ok = os.environ.get("GEMINI_API_KEY") or os.environ.get("GOOGLE_API_KEY")
        return None if ok else "set $GEMINI_API_KEY (or $GOOGLE_API_KEY)"
    raise LLMError(f"unknown LLM provider {name!r}: choose one of {', '.join(PROVIDERS)}")
