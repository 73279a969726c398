"""The agents' extension of the harness (a `bench.plugins` plugin, registered in pyproject.toml):
the `bench lm` commands, `PROVIDER:MODEL` method names (a prompted LLM agent with default
settings) and `bench run --llm-cache`. Imports stay inside the hooks: loading the plugin is cheap."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError

if TYPE_CHECKING:
    import typer

PROVIDERS = ("openai", "gemini")  # `PROVIDER:MODEL` names a prompted LLM agent


class AgentsPlugin:
    method_names = ", ".join(f"{p}:MODEL" for p in PROVIDERS)

    def commands(self, app: typer.Typer) -> None:
        from agents.policy.lm_cli import app as lm_app

        app.add_typer(lm_app, name="lm")

    def method(self, name: str) -> dict[str, Any] | None:
        provider, _, model = name.partition(":")
        if provider not in PROVIDERS or not model:
            return None
        return {"class": "agents.llm.agent:LLMAgent", "family": "llm",
                "description": f"{model} prompted as a researcher, through {provider}",
                "params": {"provider": provider, "model": model}, "in_all": False}

    def configure_run(self, options: dict[str, Any]) -> None:
        """`--llm-cache MODE`: checked here, read by the agents (`agents.llm.cache.mode_from_env`)
        through `$BENCH_LLM_CACHE` in every spawned worker."""
        mode = options.get("llm_cache")
        if mode is None:
            return
        from agents.llm.cache import MODES

        if mode not in MODES:
            raise BenchError(f"--llm-cache must be one of {', '.join(MODES)} (got {mode!r})")
        os.environ["BENCH_LLM_CACHE"] = mode


plugin = AgentsPlugin()
