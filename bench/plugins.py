"""Extensions of the harness, found through Python entry points of group `llmconfig_bench.plugins`.

`bench/` imports nothing from `agents/` or `baselines/` (tests/test_layout.py checks it): a preset
names its optimizer class as a string (configs/methods.yaml), and anything else an extension adds,
it adds through this protocol. Each entry point names an object (a module, a class instance) that
has any of these attributes, all optional:

  commands(app: typer.Typer) -> None
      Add commands or sub-apps to `bench` (called once, before the command line is parsed).
  method(name: str) -> dict | None
      The preset body (keys as in configs/methods.yaml: `class`, `family`, `description`,
      `params`, `in_all`, ...) of a method name the presets do not define, e.g. `openai:gpt-4o`;
      None when the name is not one of its own.
  method_names: str
      How its method names are spelled, for the unknown-method error ("openai:MODEL, gemini:MODEL").
  configure_run(options: dict[str, Any]) -> None
      Check and apply `bench run`'s options meant for extensions (today `llm_cache`: the value of
      `--llm-cache`, or None) before any episode runs: a BenchError for a bad value; what worker
      processes need it exports (e.g. an environment variable, which spawned workers inherit).

An installed distribution registers one in its pyproject.toml:

    [project.entry-points."llmconfig_bench.plugins"]
    agents = "agents.plugin:plugin"

Plugins are loaded once per process, in entry point name order; one that fails to load is a
BenchError naming its entry point. A package that only adds optimizers needs none of this: it names
them in the entry point group `llmconfig_bench.methods` (bench/methods.py).
"""

from __future__ import annotations

import functools
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from bench.errors import BenchError

if TYPE_CHECKING:
    import typer

GROUP = "llmconfig_bench.plugins"


@functools.cache
def loaded() -> tuple[Any, ...]:
    """Every installed plugin object (a failure is not cached: the next call raises it again)."""
    objects = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: e.name):
        try:
            objects.append(ep.load())
        except Exception as exc:
            raise BenchError(f"plugin {ep.name} = {ep.value!r} (entry point group {GROUP}) failed to load: "
                             f"{type(exc).__name__}: {exc}") from exc
    return tuple(objects)


def _hooks(name: str) -> list[Any]:
    return [hook for p in loaded() if (hook := getattr(p, name, None)) is not None]


def add_commands(app: typer.Typer) -> None:
    """Let every plugin add its commands to `app`."""
    for commands in _hooks("commands"):
        commands(app)


def method(name: str) -> dict[str, Any] | None:
    """The preset body the first plugin that knows `name` gives, or None."""
    for hook in _hooks("method"):
        if (body := hook(name)) is not None:
            return body
    return None


def method_names() -> list[str]:
    """How the plugins' method names are spelled (for error messages)."""
    return _hooks("method_names")


def configure_run(options: dict[str, Any]) -> None:
    """Hand `bench run`'s extension options to every plugin that takes them."""
    for configure in _hooks("configure_run"):
        configure(options)
