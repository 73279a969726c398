"""Method registry: presets in `configs/methods.yaml` (a class plus its parameters).

The harness creates optimizers only through this module, never by importing them directly. A
learned method (a `LearnedOptimizer`) is built from a checkpoint its caller resolves
(`bench.training.checkpoint_for`); nothing here trains.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bench import plugins
from bench.errors import BenchError
from bench.gym.problem import Problem
from bench.optimizer import Checkpoint, LearnedOptimizer, Optimizer
from bench.paths import configs_dir


class MethodSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str
    cls: str = Field(alias="class")  # "module:Class"
    family: str
    description: str = ""
    params: dict[str, Any] = {}
    needs: list[str] = []  # what it needs to run, for `bench methods` (e.g. an API key)
    trains_on: Literal["task", "builtin"] = "task"  # learned: the run's task, or every built-in task
    in_all: bool = True  # included in `--method all`

    def load_class(self) -> type[Optimizer]:
        module, _, name = self.cls.partition(":")
        return getattr(importlib.import_module(module), name)

    @property
    def learned(self) -> bool:
        """Is it a `LearnedOptimizer` (trained before its episodes)?"""
        return issubclass(self.load_class(), LearnedOptimizer)

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
            raise BenchError(f"method {self.name}: unknown parameter(s) {unknown} for {self.cls}; "
                             f"it takes: {', '.join(known) or 'none'}")

    def make(self, problem: Problem, seed: int, checkpoint: Checkpoint | None = None) -> Optimizer:
        """The optimizer for one episode; a learned method needs its `checkpoint`."""
        if not self.learned:
            return self.load_class()(problem, seed, **self.params)
        if checkpoint is None:
            raise ValueError(f"{self.name} is learned: make() needs its checkpoint "
                             "(bench.training.checkpoint_for)")
        return self.load_class()(problem, seed, checkpoint=checkpoint, **self.params)


@functools.cache
def methods() -> dict[str, MethodSpec]:
    path = configs_dir() / "methods.yaml"
    try:
        raw = yaml.safe_load(path.read_text())
        return {name: MethodSpec(name=name, **body) for name, body in raw.items()}
    except (OSError, yaml.YAMLError, ValidationError, AttributeError, TypeError) as exc:
        raise BenchError(f"method presets {path} are unreadable: {exc}") from exc


def method(name: str) -> MethodSpec:
    """A preset by name, or a method a plugin (`bench.plugins`) names, e.g. the agents'
    `openai:MODEL` / `gemini:MODEL` (an LLM agent with default settings)."""
    known = methods()
    if name in known:
        return known[name]
    body = plugins.method(name)
    if body is not None:
        try:
            return MethodSpec(name=name, **body)
        except (ValidationError, TypeError) as exc:
            raise BenchError(f"method {name!r}: a plugin gave an invalid preset: {exc}") from exc
    raise BenchError(f"unknown method {name!r}; known: {', '.join([*known, *plugins.method_names()])}")


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
