"""The OpenAI and Gemini adapters, through the real SDK clients, against the local fake server."""

from __future__ import annotations

import dataclasses
import json
import socket
import time

import pytest

from agents.llm.providers import (
    GeminiProvider,
    LLMAuthError,
    LLMError,
    LLMUnavailableError,
    OpenAIProvider,
    Request,
    credentials,
    make_provider,
)
from tests.fake_llm import Answer, FakeLLM, tokens

KEY = "test-key-0123456789"
PROTOCOLS = ("openai", "gemini")
SCHEMA = {"type": "object", "properties": {"x": {"type": "integer"}}, "required": ["x"],
          "additionalProperties": False}
REQUEST = Request(system="You tune learning rates.", messages=(("user", "pick one"), ("assistant", "{}"),
                                                               ("user", "again, as JSON")),
                  schema=SCHEMA, temperature=0.3, max_output_tokens=200, reasoning_effort="low")
ENV_VARS = ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "OPENAI_ADMIN_KEY",
            "OPENAI_CUSTOM_HEADERS", "GEMINI_API_KEY", "GOOGLE_API_KEY", "GOOGLE_GEMINI_BASE_URL",
            "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_GENAI_USE_ENTERPRISE", "GOOGLE_GENAI_API_VERSION",
            "GOOGLE_GENAI_CLIENT_MODE", "GOOGLE_GENAI_HTTP_CLIENT")


@pytest.fixture
def env(monkeypatch):
    """A clean provider environment, and Gemini backoff in milliseconds (its SDK ignores Retry-After)."""
    for var in ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(GeminiProvider, "retry_delay", 0.01)
    return monkeypatch


@pytest.fixture
def serve(env):
    """serve(responder, key=KEY, env_key=KEY) -> a running FakeLLM that both SDKs are pointed at."""
    servers = []

    def start(responder, key: str = KEY, env_key: str | None = KEY) -> FakeLLM:
        fake = FakeLLM(responder, key=key).__enter__()
        servers.append(fake)
        env.setenv("OPENAI_BASE_URL", fake.openai_base_url)
        env.setenv("GOOGLE_GEMINI_BASE_URL", fake.url)
        if env_key is not None:
            env.setenv("OPENAI_API_KEY", env_key)
            env.setenv("GEMINI_API_KEY", env_key)
        return fake

    yield start
    for fake in servers:
        fake.__exit__(None, None, None)


def provider(protocol: str, **options):
    return make_provider(protocol, "fake-model-1", **options)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_happy_path(serve, protocol):
    fake = serve(lambda record: Answer('{"x": 3}', reasoning="lower is safer"))
    reply = provider(protocol).complete(REQUEST)
    assert (reply.text, reply.reasoning) == ('{"x": 3}', "lower is safer")
    assert reply.tokens_in == tokens("You tune learning rates.pick one{}again, as JSON")
    assert reply.tokens_out == tokens('{"x": 3}') + tokens("lower is safer")
    [record] = fake.requests
    assert record["protocol"] == protocol and record["model"] == "fake-model-1"
    assert record["system"] == REQUEST.system
    assert record["messages"] == list(REQUEST.messages)
    assert record["schema"] == SCHEMA
    body = record["body"]
    if protocol == "openai":
        assert body["temperature"] == 0.3 and body["max_completion_tokens"] == 200
        assert body["reasoning_effort"] == "low"
        assert body["response_format"]["json_schema"] == {"name": "answer", "schema": SCHEMA, "strict": True}
    else:
        config = body["generationConfig"]
        assert config["temperature"] == 0.3 and config["maxOutputTokens"] == 200
        assert config["responseMimeType"] == "application/json"
        thinking = {k.replace("_", "").lower(): v for k, v in config["thinkingConfig"].items()}
        assert thinking == {"includethoughts": True, "thinkingbudget": 1024}


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_unset_options_and_unstructured_send_nothing(serve, protocol):
    fake = serve(lambda record: "plain text")
    request = Request(system="s", messages=(("user", "u"),))
    reply = provider(protocol).complete(request)
    assert (reply.text, reply.reasoning) == ("plain text", "")
    [record] = fake.requests
    assert record["schema"] is None
    body = json.dumps(record["body"])
    for field in ("temperature", "max_completion_tokens", "maxOutputTokens", "reasoning_effort",
                  "response_format", "responseMimeType", "thinkingConfig", "thinking_config"):
        assert field not in body


def test_openai_base_url_alone_needs_no_key(serve):
    fake = serve(lambda record: "ok", key="unused", env_key=None)
    assert credentials("openai") is None
    assert provider("openai").complete(REQUEST).text == "ok"
    assert len(fake.requests) == 1


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_rate_limit_is_retried_by_the_sdk(serve, protocol):
    fake = serve(lambda record: "ok" if len(fake.requests) > 1 else Answer("slow", 429, retry_after=0.01))
    assert provider(protocol, max_retries=3).complete(REQUEST).text == "ok"
    assert len(fake.requests) == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_error_forever_is_unavailable(serve, protocol):
    fake = serve(lambda record: Answer("boom", 500, retry_after=0.01))
    with pytest.raises(LLMUnavailableError, match="500") as caught:
        provider(protocol, max_retries=2).complete(REQUEST)
    assert len(fake.requests) == 3
    assert "fake-model-1" in str(caught.value) and fake.url in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_bad_request_is_an_llm_error_with_scrubbed_excerpt(serve, protocol):
    fake = serve(lambda record: Answer(f"unsupported field 'x' (your key {KEY} is fine)", 400))
    with pytest.raises(LLMError) as caught:
        provider(protocol).complete(REQUEST)
    assert type(caught.value) is LLMError and len(fake.requests) == 1
    message = str(caught.value)
    assert "400" in message and "unsupported field" in message and KEY not in message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wrong_key_is_an_auth_error_without_the_key(serve, protocol):
    wrong = "sk-wrong-secret-abcdef123456"
    fake = serve(lambda record: "never", key="right-key", env_key=wrong)
    with pytest.raises(LLMAuthError) as caught:
        provider(protocol, max_retries=3).complete(REQUEST)
    message = str(caught.value)
    assert ("OPENAI_API_KEY" if protocol == "openai" else "GEMINI_API_KEY") in message
    assert wrong not in message and "secret" not in message and "abcdef" not in message
    assert len(fake.requests) == 1 and not fake.requests[0]["authorized"]  # not retried


def test_gemini_auth_error_names_google_api_key_when_that_is_used(serve, env):
    serve(lambda record: "never", key="right-key", env_key=None)
    env.setenv("GOOGLE_API_KEY", "AIza-wrong-key")
    with pytest.raises(LLMAuthError, match="GOOGLE_API_KEY") as caught:
        provider("gemini").complete(REQUEST)
    assert "AIza-wrong-key" not in str(caught.value)


def test_gemini_invalid_key_as_the_real_api_reports_it(serve):
    """The real API answers a bad key with 400 INVALID_ARGUMENT "API key not valid" (API_KEY_INVALID)."""
    fake = serve(lambda record: Answer("API key not valid. Please pass a valid API key.", 400))
    with pytest.raises(LLMAuthError, match="GEMINI_API_KEY"):
        provider("gemini").complete(REQUEST)
    assert len(fake.requests) == 1


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_connection_refused_is_unavailable(env, protocol):
    url = f"http://127.0.0.1:{closed_port()}"
    env.setenv("OPENAI_BASE_URL", url + "/v1")
    env.setenv("GOOGLE_GEMINI_BASE_URL", url)
    env.setenv("OPENAI_API_KEY", KEY)
    env.setenv("GEMINI_API_KEY", KEY)
    with pytest.raises(LLMUnavailableError, match="unreachable") as caught:
        provider(protocol, max_retries=1).complete(REQUEST)
    assert url in str(caught.value) and KEY not in str(caught.value)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_timeout_is_unavailable(serve, protocol):
    fake = serve(lambda record: time.sleep(0.6) or "late")
    with pytest.raises(LLMUnavailableError):
        provider(protocol, timeout=0.2, max_retries=0).complete(REQUEST)
    assert len(fake.requests) == 1


def test_credentials(env):
    assert "OPENAI_API_KEY" in credentials("openai") and "OPENAI_BASE_URL" in credentials("openai")
    assert "GEMINI_API_KEY" in credentials("gemini")
    with pytest.raises(LLMAuthError, match="OPENAI_API_KEY"):
        OpenAIProvider("m")
    with pytest.raises(LLMAuthError, match="GEMINI_API_KEY"):
        GeminiProvider("m")
    env.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    assert credentials("openai") is None
    env.delenv("OPENAI_BASE_URL")
    env.setenv("OPENAI_API_KEY", "k")
    assert credentials("openai") is None
    env.setenv("GOOGLE_API_KEY", "k")
    assert credentials("gemini") is None
    env.delenv("GOOGLE_API_KEY")
    env.setenv("GEMINI_API_KEY", "k")
    assert credentials("gemini") is None
    with pytest.raises(LLMError):
        credentials("claude")


def test_make_provider(env):
    env.setenv("OPENAI_API_KEY", "k")
    env.setenv("GEMINI_API_KEY", "k")
    openai, gemini = make_provider("openai", "gpt-x", timeout=5.0), make_provider("gemini", "gem-y")
    assert (type(openai), openai.name, openai.model) == (OpenAIProvider, "openai", "gpt-x")
    assert (type(gemini), gemini.name, gemini.model) == (GeminiProvider, "gemini", "gem-y")
    with pytest.raises(LLMError, match="unknown LLM provider"):
        make_provider("claude", "m")


def test_request_key():
    key = REQUEST.key()
    assert json.loads(json.dumps(key)) == key
    assert dataclasses.replace(REQUEST).key() == key
    changes = {"system": "other", "messages": (("user", "pick one"),), "schema": None, "temperature": 0.0,
               "max_output_tokens": 10, "reasoning_effort": "high", "seed": 7}
    assert set(changes) == set(key)
    for field, value in changes.items():
        assert dataclasses.replace(REQUEST, **{field: value}).key() != key, field
    with pytest.raises(ValueError):
        Request("s", (("system", "x"),))
    with pytest.raises(ValueError):
        Request("s", (), reasoning_effort="extreme")
