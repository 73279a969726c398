"""A prompted LLM researcher behind the `Optimizer` interface (`openai:MODEL`, `gemini:MODEL`, presets).

Each `ask` renders the prompt (`agents.llm.prompt`) and asks the model for one JSON answer
(`agents.llm.answer`), using the provider's structured output where it has one. An answer that
cannot be used (no JSON, an unknown id, a value outside the space) is asked again with the error,
at most `reasks` times; then a uniformly drawn untried candidate is run instead and the trial is
marked as a fallback. Every trial's log carries the model's reasoning, the provider's thinking
text when it returns one, tokens in and out, the estimated dollars, whether the replies came
from the cache, and the fallback reason.

Provider or credential problems (a bad key, a network that stays down) are not the method's
fault: they stop the run with one clear message (`LLMError`) instead of being scored.

With `local` (a known local model of `agents.llm.local.MODELS`, or a model directory), the agent's
process serves that model itself as `model` over the OpenAI API (`provider` openai): no key or base
URL is needed; `weights` pins a trained directory's fingerprint (replays without the directory).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agents.llm import local as local_models
from agents.llm.answer import AnswerError, Form
from agents.llm.cache import ResponseCache
from agents.llm.prices import dollars
from agents.llm.prompt import (
    CHARS_PER_TOKEN,
    POOL_LIMIT,
    PROMPT_TOKENS,
    SYSTEM,
    PriorDigest,
    Prompting,
    candidates,
    render,
    tokens,
)
from agents.llm.providers import LLMUnavailableError, Provider, Request, credentials, make_provider
from bench.gym.problem import Query
from bench.optimizer import Optimizer

REASKS = 2  # how often an unusable answer is asked again before the fallback


def next_trial(optimizer: Optimizer, prior: PriorDigest, prompting: Prompting) -> tuple[Form, str]:
    """The answer form and the user message of `optimizer`'s next trial, as the agent asks it
    (its history, untried candidates and affordable fidelities); shared with the chat export."""
    problem = optimizer.problem
    cost = problem.budget.kind == "cost"
    fidelities = tuple(optimizer.affordable()) if cost else ()
    ids = optimizer.pool_ids()
    by_id = not cost and len(ids) <= prompting.pool_limit and \
        tokens(candidates(problem, ids), prompting.chars_per_token) <= prompting.prompt_tokens / 2
    form = Form(problem.space, by_id, frozenset(int(i) for i in ids), fidelities, prompting.reasoning_chars)
    return form, render(problem, optimizer.history, by_id, ids, fidelities, prompting.prompt_tokens, prior,
                        prompting.chars_per_token)


class LLMAgent(Optimizer):
    def __init__(self, problem, seed, *, provider: str, model: str, temperature: float | None = None,
                 max_output_tokens: int | None = 4096, reasoning_effort: str | None = None,
                 structured: bool = True, pool_limit: int = POOL_LIMIT,
                 prompt_tokens: int = PROMPT_TOKENS, chars_per_token: float = CHARS_PER_TOKEN,
                 reasoning_chars: int | None = None, reasks: int = REASKS, local: str | None = None,
                 weights: str | None = None):
        super().__init__(problem, seed)

        def factory() -> Provider:
            options = {"base_url": local_models.server(local, model).base_url} if local else {}
            return make_provider(provider, model, **options)

        def check() -> str | None:
            return "; ".join(cannot_ask(provider, local)) or None

        self.client = CachedProvider(factory, provider, cached_name(model, local, weights), ResponseCache(),
                                     check)
        self.sampling = {"temperature": temperature, "max_output_tokens": max_output_tokens,
                         "reasoning_effort": reasoning_effort}
        self.prompting = Prompting(pool_limit, prompt_tokens, chars_per_token, reasoning_chars)
        self.structured = structured  # send the answer's schema (structured output) or ask for free text
        self.reasks = reasks
        self.prior = PriorDigest(problem)

    @classmethod
    def unavailable(cls, *, provider: str, model: str, local: str | None = None, weights: str | None = None,
                    **_) -> list[str]:
        """Runnable with credentials for the provider (a local model: its packages and file), or
        from a replay in the response cache."""
        if local and provider != "openai":
            return [f"a local model is served over the OpenAI API: provider must be openai, not {provider}"]
        reasons = cannot_ask(provider, local)
        cache = ResponseCache()
        if not reasons or (cache.reads and cache.count(provider, cached_name(model, local, weights))):
            return []
        return [f"{'; '.join(reasons)}, or a replay of its requests in the LLM response cache"]

    def ask(self) -> Query:
        problem = self.problem
        cost = problem.budget.kind == "cost"
        form, prompt = next_trial(self, self.prior, self.prompting)
        fidelities = form.fidelities
        messages: list[tuple[str, str]] = [("user", prompt)]
        info: dict[str, Any] = {"tokens_in": 0, "tokens_out": 0, "dollars": 0.0, "requests": 0,
                                "cached": 0, "attempts": [], "fallback": None}
        for _ in range(1 + self.reasks):
            request = Request(SYSTEM, tuple(messages), form.schema() if self.structured else None,
                              seed=self.seed, **self.sampling)
            reply, cached = self.client.complete(request)
            self._count(info, reply, cached)
            try:
                answer = form.parse(reply.text)
            except AnswerError as exc:
                info["attempts"].append({"reply": reply.text, "error": str(exc)})
                messages += [("assistant", reply.text),
                             ("user", f"That answer cannot be used: {exc}. Reply again with one JSON "
                                      "object in the requested form.")]
                continue
            info.update(rationale=answer.reasoning, thinking=reply.reasoning)
            fidelity = answer.fidelity or problem.target
            if answer.candidate is not None:
                return self._with(self.query_candidate(answer.candidate), info)
            return self._with(Query(answer.config, fidelity), info)
        info["fallback"] = info["attempts"][-1]["error"]
        fallback = self.random_candidate(fidelities[0] if cost else None)
        return self._with(Query(fallback, fidelities[0] if cost else problem.target), info)

    def _count(self, info: dict, reply, cached: bool) -> None:
        info["requests"] += 1
        info["cached"] += int(cached)
        info["tokens_in"] += reply.tokens_in
        info["tokens_out"] += reply.tokens_out
        cost = dollars(self.client.model, reply.tokens_in, reply.tokens_out)
        info["dollars"] = None if cost is None or info["dollars"] is None else info["dollars"] + cost

    @staticmethod
    def _with(query: Query, info: dict) -> Query:
        return Query(query.config, query.fidelity, query.candidate, info=info)


def cannot_ask(provider: str, local: str | None) -> list[str]:
    """What stops a request from reaching the model here: the provider's credentials, or a local
    model's packages and weights."""
    if local:
        return local_models.unavailable(local)
    return [reason for reason in [credentials(provider)] if reason]


def cached_name(model: str, local: str | None, weights: str | None) -> str:
    """The model's name in the response cache: a local model's carries its weights' fingerprint
    (`agents.llm.local.fingerprint`), so retrained weights never replay the old ones' replies."""
    if not local:
        return model
    return f"{model}@{local_models.fingerprint(local, weights) or 'unknown-weights'}"


class CachedProvider:
    """A provider behind the response cache; the provider itself is made on the first miss, so a
    complete replay needs no credentials (`check`: None, or what is missing) and sends nothing."""

    def __init__(self, factory, name: str, model: str, cache: ResponseCache,
                 check: Callable[[], str | None]):
        self.factory, self.name, self.model, self.cache, self.check = factory, name, model, cache, check
        self._provider: Provider | None = None

    def complete(self, request: Request):
        """(reply, whether it came from the cache)."""
        hit = self.cache.get(self.name, self.model, request)
        if hit is not None:
            return hit, True
        if self._provider is None:
            if (reason := self.check()) is not None:
                raise LLMUnavailableError(f"{self.name}:{self.model}: a request is not in the replay "
                                          f"cache {self.cache.path} (nor in the shipped replays) and the "
                                          f"model cannot be asked here: {reason}")
            self._provider = self.factory()
        reply = self._provider.complete(request)
        self.cache.put(self.name, self.model, request, reply)
        return reply, False
