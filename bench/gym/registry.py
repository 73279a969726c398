"""Task registry: built-in task names, or a path to a user's YAML spec."""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

from bench.errors import BenchError
from bench.gym.spec import load_spec
from bench.gym.task import Task

# name -> "module[:function]" returning a Task (function default: `load`)
BUILTIN: dict[str, str] = {
    "data_mixture": "bench.gym.tasks.data_mixture",
    "pretrain_hparams": "bench.gym.tasks.pretrain_hparams",
    "architecture": "bench.gym.tasks.architecture",
    "architecture_wallclock": "bench.gym.tasks.architecture:load_wallclock",
    "grpo": "bench.gym.tasks.grpo",
    "sft_lora": "bench.gym.tasks.sft_lora",
}


def task_names() -> list[str]:
    return list(BUILTIN)


def resolve_tasks(arg: str) -> list[str]:
    """`--task` value -> task names/paths: `all`, a comma list, names or spec paths."""
    items = [a.strip() for a in arg.split(",") if a.strip()]
    if not items:
        raise BenchError("no task given; use --task NAME (see `bench tasks`) or a spec .yaml")
    out: list[str] = []
    for item in items:
        out += task_names() if item == "all" else [item]
    for item in out:
        if item not in BUILTIN and not item.endswith((".yaml", ".yml")):
            raise BenchError(f"unknown task {item!r}; known: {', '.join(BUILTIN)} "
                             "(or a path to a task spec .yaml)")
    return list(dict.fromkeys(out))


@functools.cache
def load_task(name: str) -> Task:
    """Load a built-in task by name, or a user task from a spec file (cached per process)."""
    if name in BUILTIN:
        module, _, function = BUILTIN[name].partition(":")
        return getattr(importlib.import_module(module), function or "load")()
    if name.endswith((".yaml", ".yml")):
        if not Path(name).is_file():
            raise BenchError(f"task spec {name} does not exist")
        return load_spec(name)
    raise BenchError(f"unknown task {name!r}; known: {', '.join(BUILTIN)}")
