"""Suites: the protocol (experiments, budgets, seeds, prior), as YAML under configs/suites/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.task import Prior, Task
from bench.paths import configs_dir


@dataclass(frozen=True)
class Protocol:
    """How a suite sets up one task's episodes: the `prior`, and whether an episode sees the task
    through the cross-validation fold that tests its experiment (`cv`)."""

    prior: Prior
    cv: bool = False

    def task_for(self, task: Task, experiment: str) -> Task:
        """The task an episode of `experiment` runs on: its cv fold, or the task itself."""
        return task.cv_fold(experiment) if self.cv else task

    def same_episodes(self, other: Protocol, task: Task, experiment: str) -> bool:
        """Whether `other` gives `experiment`'s episodes exactly what this protocol does: the same
        task (fold or not) and the same prior (kind, fidelities and budget). An episode's key then
        differs only in its suite's name (e.g. a ladder's distance 1 and `cv`: no cheaper fidelity
        costs more than the target)."""
        mine, theirs = self.prior, other.prior
        return (self.cv == other.cv and mine.kind == theirs.kind and mine.budget == theirs.budget
                and [f.name for f in task.prior_fidelities(experiment, mine)]
                == [f.name for f in task.prior_fidelities(experiment, theirs)])


class Suite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    split: Literal["train", "test"] = "test"
    experiments: int | list[str] | None = None  # first N of the split, or names; None = all
    budget: Literal["trials", "cost"] = "trials"  # cost: in target-run equivalents
    budgets: list[float] = Field(min_length=1)
    seeds: int = Field(ge=1)
    seeds_by_family: dict[str, int] = {}  # e.g. fewer seeds for paid LLM agents
    prior: Literal["cheaper", "none"] = "cheaper"
    # Per task (a number for every task, or {task: number, default: number}):
    prior_budget: float | dict[str, float] | None = None  # k target-run equivalents of GPU-hours
    gap: float | dict[str, float] | None = None  # prior fidelities cost at most target cost / g
    episode_timeout: float | None = Field(default=1800, gt=0)  # seconds; past it: failure `timeout`
    # Grouped cross-validation: every experiment of the task (whatever its split) is tested in the
    # fold that holds its group out (`Task.folds`); learned methods train on the fold's other groups.
    cv: bool = False
    # A distance ladder: the suite runs once per g, as suite `<name>-gap<g>`, its prior every run
    # at fidelities costing at most target / g (`gap` then stays unset).
    gaps: list[float] | None = None

    @model_validator(mode="after")
    def _whole_trials(self):
        if self.budget == "trials":
            bad = [b for b in self.budgets if b != int(b) or b < 1]
            if bad:
                raise ValueError(f"trial budgets are whole numbers of trials >= 1 (got {bad})")
        elif any(b <= 0 for b in self.budgets):
            raise ValueError("cost budgets must be positive")
        if self.gaps is not None and (self.gap is not None or not self.gaps or min(self.gaps) < 1):
            raise ValueError("gaps: a non-empty list of distances >= 1, without gap")
        for name in ("gap", "prior_budget"):
            value = getattr(self, name)
            values = value.values() if isinstance(value, dict) else [value]
            if any(v is not None and v <= 0 for v in values) or (name == "gap" and any(
                    v is not None and v < 1 for v in values)):
                raise ValueError(f"{name} must be positive (gap at least 1)")
        return self

    def overridden(self, *, budget: float | None = None, seeds: int | None = None,
                   experiments: list[str] | None = None, gap: float | None = None,
                   prior_budget: float | None = None) -> Suite:
        """This suite with a run's overrides (`bench run` options and `bench.api.run` arguments;
        None keeps the suite's): one budget, a number of seeds for every family, experiment names,
        or a prior distance or prior budget, which rename it `<name>-gap<g>` / `<name>-k<k>`."""
        s = self
        if budget is not None:
            if budget <= 0 or (s.budget == "trials" and budget != int(budget)):
                need = "a whole number of trials" if s.budget == "trials" else "positive"
                raise BenchError(f"--budget must be {need} for suite {s.name} (got {budget:g})")
            s = s.model_copy(update={"budgets": [float(budget)]})
        if seeds is not None:
            if seeds < 1:
                raise BenchError(f"--seeds must be at least 1 (got {seeds})")
            s = s.model_copy(update={"seeds": seeds, "seeds_by_family": {}})
        if gap is not None:
            if gap < 1:
                raise BenchError(f"--gap must be at least 1 (got {gap:g})")
            if s.gaps is not None:
                raise BenchError(f"suite {s.name} is a ladder (gaps {s.gaps}); --gap does not apply to it")
            s = s.model_copy(update={"gap": gap, "name": f"{s.name}-gap{gap:g}"})
        if prior_budget is not None:
            if prior_budget <= 0:
                raise BenchError(f"--prior-budget must be positive (got {prior_budget:g})")
            s = s.model_copy(update={"prior_budget": prior_budget, "name": f"{s.name}-k{prior_budget:g}"})
        if experiments is not None:
            s = s.model_copy(update={"experiments": list(experiments)})
        return s

    def prior_for(self, task: str) -> Prior:
        """The prior protocol for one task (by its name)."""
        def pick(value):
            return value.get(task, value.get("default")) if isinstance(value, dict) else value
        return Prior(self.prior, gap=pick(self.gap), budget=pick(self.prior_budget))

    def per_gap(self) -> list[Suite]:
        """The suite as it runs: one suite `<name>-gap<g>` per distance of a ladder, else itself."""
        if self.gaps is None:
            return [self]
        return [self.model_copy(update={"name": f"{self.name}-gap{g:g}", "gap": g, "gaps": None})
                for g in self.gaps]

    def protocol(self, task: str) -> Protocol:
        """How this suite's episodes of `task` are set up."""
        return Protocol(self.prior_for(task), self.cv)

    def budget_objects(self) -> list[Budget]:
        return [Budget(self.budget, b) for b in self.budgets]

    def seeds_for(self, family: str) -> list[int]:
        return list(range(self.seeds_by_family.get(family, self.seeds)))

    def pick_experiments(self, available: list[str]) -> list[str]:
        """The suite's experiments among `available` (names not there are skipped: a name list
        may span several tasks; `bench.runner.plan` rejects names that no task has)."""
        if self.experiments is None:
            return available
        if isinstance(self.experiments, int):
            return available[: self.experiments]
        return [e for e in self.experiments if e in available]


def suite_names() -> list[str]:
    return sorted(p.stem for p in (configs_dir() / "suites").glob("*.yaml"))


def load_suite(name_or_path: str) -> Suite:
    path = Path(name_or_path)
    if not path.suffix:
        path = configs_dir() / "suites" / f"{name_or_path}.yaml"
    if not path.is_file():
        raise BenchError(f"unknown suite {name_or_path!r}; known: {', '.join(suite_names())} "
                         "(or a path to a suite .yaml)")
    try:
        raw = yaml.safe_load(path.read_text())
        return Suite.model_validate(raw)
    except yaml.YAMLError as exc:
        raise BenchError(f"suite {path} is not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'suite'}: {e['msg']}"
                             for e in exc.errors())
        raise BenchError(f"suite {path} is invalid: {problems}") from None
