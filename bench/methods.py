"""Method registry: presets in `configs/methods.yaml` (a class plus its parameters).

The harness creates optimizers only through this module, never by importing them directly.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from bench.errors import BenchError
from bench.gym.problem import Problem
from bench.optimizer import Optimizer
from bench.paths import configs_dir


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    target: str  # "module:Class"
    family: str
    description: str = ""
    params: dict[str, Any] = {}
    needs: list[str] = []  # what it needs to run, for `bench methods` (e.g. an API key)
    needs_training: bool = False
    trains_on: Literal["task", "builtin"] = "task"  # learned: the run's task, or every built-in task
    in_all: bool = True  # included in `--method all`

    def load_class(self) -> type[Optimizer]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)

    def missing(self) -> list[str]:
        """What stops this method from running here (empty if it can run)."""
        try:
            cls = self.load_class()
        except (ImportError, AttributeError) as exc:
            return [f"import failed: {exc}"]
        return cls.unavailable(**self.params)

    def check_params(self) -> None:
        """A BenchError naming any preset parameter the class does not take (a misspelled key
        would otherwise fail every episode as a method failure)."""
        signature = inspect.signature(self.load_class().__init__)
        taken = signature.parameters
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in taken.values()):
            return
        unknown = sorted(set(self.params) - set(taken) | set(self.params) & {"self", "problem", "seed"})
        if unknown:
            known = [n for n, p in taken.items() if n not in ("self", "problem", "seed", "checkpoint")
                     and p.kind is not inspect.Parameter.VAR_POSITIONAL]
            raise BenchError(f"method {self.name}: unknown parameter(s) {unknown} for {self.target}; "
                             f"it takes: {', '.join(known) or 'none'}")

    def make(self, problem: Problem, seed: int, task=None) -> Optimizer:
        """The optimizer for one episode; a learned method gets its checkpoint for `task`
        (trained on that task's train experiments on first use, `bench.training`)."""
        if not self.needs_training:
            return self.load_class()(problem, seed, **self.params)
        from bench.training import checkpoint_for

        if task is None:
            raise ValueError(f"{self.name} is learned: make() needs the task it was trained on")
        return self.load_class()(problem, seed, checkpoint=checkpoint_for(self, task), **self.params)


@functools.cache
def methods() -> dict[str, MethodSpec]:
    path = configs_dir() / "methods.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
        return {name: MethodSpec(name=name, **body) for name, body in raw.items()}
    except (OSError, yaml.YAMLError, ValidationError, AttributeError, TypeError) as exc:
        raise BenchError(f"method presets {path} are unreadable: {exc}") from exc


LLM_PROVIDERS = ("openai", "gemini")  # `PROVIDER:MODEL` names a prompted LLM agent


def method(name: str) -> MethodSpec:
    """A preset by name, or `openai:MODEL` / `gemini:MODEL` (an LLM agent with default settings)."""
    known = methods()
    if name in known:
        return known[name]
    provider, _, model = name.partition(":")
    if provider in LLM_PROVIDERS and model:
        return MethodSpec(name=name, target="agents.llm.agent:LLMAgent", family="llm",
                          description=f"{model} prompted as a researcher, through {provider}",
                          params={"provider": provider, "model": model}, in_all=False)
    llm = " or PROVIDER:MODEL (" + ", ".join(f"{p}:MODEL" for p in LLM_PROVIDERS) + ")"
    raise BenchError(f"unknown method {name!r}; known: {', '.join(known)}{llm}")


def resolve_methods(arg: str) -> list[str]:
    """`--method` value -> method names: a comma list, or `all` (every runnable preset)."""
    items = [a.strip() for a in arg.split(",") if a.strip()]
    if not items:
        raise BenchError("empty method list; use --method NAME[,NAME...] or all (see `bench methods`)")
    out: list[str] = []
    for item in items:
        if item == "all":
            out += [m for m, s in methods().items() if s.in_all and not s.missing()]
        else:
            missing = method(item).missing()
            if missing:
                raise BenchError(f"method {item} cannot run here: {'; '.join(missing)}")
            out.append(item)
    out = list(dict.fromkeys(out))
    for name in out:
        method(name).check_params()
    return out


def skipped_by_all() -> dict[str, list[str]]:
    """Presets `--method all` leaves out because they cannot run here, with the reasons."""
    return {m: missing for m, s in methods().items() if s.in_all and (missing := s.missing())}
