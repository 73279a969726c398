"""The prompt protocol of the LLM agents: what the researcher is told before each trial.

One system message (the role) and one user message, rebuilt from scratch for every trial, with
these sections in this order:
  1. Task: `Problem.description` (task, experiment, objective and direction, fidelities with
     descriptors and GPU-hours per run, budget, size of the prior).
  2. Search space: every parameter with its type, range or choices, and scale.
  3. Cheap runs (the prior): per fidelity, cheapest first, the number of runs and the best,
     median and worst value, then its best runs, best first, as CSV. When the prior does not fit
     the token budget, fewer best runs per fidelity are shown (at least `MIN_ROWS`), then the
     most expensive fidelities keep their rows and the cheapest are reduced to statistics.
  4. Your runs so far: every trial of this episode (fidelity, configuration as run, value) with
     the reasoning the agent gave for it; the best target value so far; the budget left.
  5. Candidates: when the target pool is small (at most `POOL_LIMIT` untried candidates) and
     their list takes at most half the token budget, the untried target candidates as CSV with
     their ids, and the agent answers with an id; otherwise it answers with a configuration,
     snapped to the nearest candidate.
  6. The answer's form (see `agents.llm.answer`).
Nothing in it comes from a target outcome the agent has not obtained itself: the prior holds
cheaper fidelities only (the suite's protocol), the candidates carry no outcomes, and their ids
and order are the episode's shuffle.

The token budget is per model (a preset's `prompt_tokens`, with its context in mind), and tokens
are estimated as characters / `chars_per_token`: 4 suits the large models' tokenizers on this
text; SmolLM2's splits digits, so its CSV of numbers costs about one token per character (1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import pandas as pd
from ConfigSpace import (
    CategoricalHyperparameter,
    Constant,
    OrdinalHyperparameter,
    UniformFloatHyperparameter,
    UniformIntegerHyperparameter,
)

from bench.gym.problem import Outcome, Problem, Query

POOL_LIMIT = 100  # list the target candidates (answer by id) when at most this many are untried
PROMPT_TOKENS = 6000  # the budget of the whole user message; the prior is cut to fit what is left
CHARS_PER_TOKEN = 4  # characters per token of the large models' tokenizers
MIN_ROWS = 3  # best runs shown per prior fidelity before fidelities are reduced to statistics

SYSTEM = (
    "You are an experienced LLM research engineer. You configure an expensive training run "
    "(the target fidelity) by learning from cheap, small-scale runs and extrapolating how the "
    "best configuration moves as models and data grow. Every run you ask for is executed and "
    "its measured result is reported back to you. Think briefly, then answer with one JSON "
    "object that follows the requested form."
)


@dataclass(frozen=True)
class Prompting:
    """How the prompt fits a model (a preset's parameters): the target pool is listed, and the
    agent answers by id, when at most `pool_limit` candidates are untried and their list takes at
    most half of `prompt_tokens`, the budget of the user message, counted as characters /
    `chars_per_token`; `reasoning_chars` caps the answer's reasoning (None: uncapped)."""

    pool_limit: int = POOL_LIMIT
    prompt_tokens: int = PROMPT_TOKENS
    chars_per_token: float = CHARS_PER_TOKEN
    reasoning_chars: int | None = None

    @classmethod
    def of(cls, params: dict) -> Prompting:
        """The prompting of a preset's parameters (the others are ignored)."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})


def tokens(text: str, chars_per_token: float = CHARS_PER_TOKEN) -> int:
    """Estimated tokens of `text` for a tokenizer of `chars_per_token` characters per token."""
    return math.ceil(len(text) / chars_per_token)


def candidates(problem: Problem, ids: np.ndarray) -> str:
    """The section that lists the untried target candidates `ids` (answers by id)."""
    return _section("Untried candidates at the target (id, configuration)",
                    _csv(problem.arrays().configs.iloc[ids], index=ids, label="id"))


def render(problem: Problem, history: list[tuple[Query, Outcome]], by_id: bool, ids: np.ndarray,
           fidelities: tuple[str, ...] = (), budget_tokens: int = PROMPT_TOKENS,
           prior: PriorDigest | None = None, chars_per_token: float = CHARS_PER_TOKEN) -> str:
    """The user message for the next trial (`ids`: the untried target candidates, listed when
    `by_id`; `fidelities`: those a cost budget still affords, or () on trial budgets; `prior`:
    the episode's `PriorDigest`, built here when not given)."""
    head = [_section("Task", problem.description), _section("Search space", _space(problem))]
    tail = [_section("Your runs so far", _trials(problem, history, fidelities))]
    if by_id:
        tail.append(candidates(problem, ids))
    tail.append(_section("Answer", _instructions(problem, by_id, fidelities)))
    fixed = sum(tokens(s, chars_per_token) for s in head + tail)
    digest = prior or PriorDigest(problem)
    left = int(max(0, budget_tokens - fixed) * chars_per_token)
    return "\n\n".join([*head, _section("Cheap runs (the prior)", digest.text(left)), *tail])


def _section(title: str, body: str) -> str:
    return f"## {title}\n{body}"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _space(problem: Problem) -> str:
    lines = []
    for name, hp in problem.space.items():
        if isinstance(hp, UniformFloatHyperparameter | UniformIntegerHyperparameter):
            kind = "integer" if isinstance(hp, UniformIntegerHyperparameter) else "float"
            scale = ", log scale" if hp.log else ""
            lines.append(f"- {name}: {kind} in [{_fmt(hp.lower)}, {_fmt(hp.upper)}]{scale}")
        elif isinstance(hp, OrdinalHyperparameter):
            lines.append(f"- {name}: one of {[_fmt(v) for v in hp.sequence]} (ordered)")
        elif isinstance(hp, CategoricalHyperparameter):
            lines.append(f"- {name}: one of {list(hp.choices)}")
        elif isinstance(hp, Constant):
            lines.append(f"- {name}: always {hp.value!r}")
    return "\n".join(lines)


def _csv(frame: pd.DataFrame, index=None, label: str = "") -> str:
    cols = list(frame.columns)
    head = ",".join(([label] if label else []) + cols)
    columns = [frame[c].tolist() for c in cols]
    rows = zip(*columns, strict=True)
    if index is None:
        return "\n".join([head, *(",".join(map(_fmt, r)) for r in rows)])
    return "\n".join([head, *(",".join([str(i), *map(_fmt, r)]) for i, r in zip(index, rows, strict=True))])


class PriorDigest:
    """The prior section, formatted once per episode and cut to any length (`text`)."""

    def __init__(self, problem: Problem):
        prior, sign = problem.prior, problem.objective.sign
        self.blocks: list[tuple[str, list[str], str]] = []  # (statistics, csv rows best first, header)
        self.intro = (f"Values are {problem.objective.name}; {'lower' if sign > 0 else 'higher'} is "
                      "better.\n")
        for f in problem.fidelities[:-1]:
            g = prior[prior["fidelity"] == f.name]
            if not len(g):
                continue
            g = g.iloc[np.argsort(sign * g["value"].to_numpy(float), kind="stable")]
            v = g["value"].to_numpy(float)
            stats = (f"### {f.name}: {len(g)} runs; best {_fmt(float(v[0]))}, median "
                     f"{_fmt(float(np.median(v)))}, worst {_fmt(float(v[-1]))}")
            head, *rows = _csv(g[[*problem.params, "value"]]).split("\n")
            self.blocks.append((stats, rows, head))

    def text_of(self, rows: list[int]) -> str:
        parts = []
        for (stats, lines, head), r in zip(self.blocks, rows, strict=True):
            if r == 0:
                parts.append(stats)
                continue
            shown = "all runs" if r >= len(lines) else f"the best {r}"
            parts.append(f"{stats}; {shown}, best first:\n" + "\n".join([head, *lines[:r]]))
        return self.intro + "\n".join(parts)

    def text(self, chars: int) -> str:
        """At most about `chars` characters: fewer best runs per fidelity (down to `MIN_ROWS`),
        then the cheapest fidelities reduced to their statistics."""
        if not self.blocks:
            return "None: no cheaper-fidelity runs are given for this experiment."
        cap = max(len(lines) for _, lines, _ in self.blocks)
        while cap > MIN_ROWS and len(self.text_of([min(cap, len(b[1])) for b in self.blocks])) > chars:
            cap = max(MIN_ROWS, cap // 2)
        rows = [min(cap, len(b[1])) for b in self.blocks]
        for i in range(len(rows)):  # still too long: the cheapest fidelities lose their rows first
            if len(self.text_of(rows)) <= chars:
                break
            rows[i] = 0
        return self.text_of(rows)


def _trials(problem: Problem, history: list[tuple[Query, Outcome]], fidelities: tuple[str, ...]) -> str:
    lines = []
    best = None
    for t, (query, outcome) in enumerate(history, 1):
        config = ", ".join(f"{k}={_fmt(v)}" for k, v in outcome.config.items())
        note = (query.info or {}).get("rationale")
        lines.append(f"{t}. [{outcome.fidelity}] {config} -> {_fmt(outcome.value)}"
                     + (f"  (your reasoning: {note})" if note else ""))
        improves = best is None or problem.objective.is_better(outcome.value, best)
        if outcome.fidelity == problem.target and improves:
            best = outcome.value
    if not lines:
        lines.append("None yet.")
    lines.append(f"Best target value so far: {_fmt(best) if best is not None else 'none'}.")
    budget = problem.budget
    if budget.kind == "trials":
        left = budget.amount - len(history)
        lines.append(f"Budget left: {left:g} of {budget.amount:g} target trials (this is trial "
                     f"{len(history) + 1}).")
    else:
        spent = sum(o.cost for _, o in history)
        lines.append(f"Budget left: {problem.budget_gpu_hours() - spent:.4g} of "
                     f"{problem.budget_gpu_hours():.4g} GPU-hours; affordable now: {', '.join(fidelities)}.")
    return "\n".join(lines)


def _instructions(problem: Problem, by_id: bool, fidelities: tuple[str, ...]) -> str:
    choice = ('"candidate": <the id of one untried candidate listed above>' if by_id else
              '"config": {' + ", ".join(f'"{n}": <value>' for n in problem.params) + "}")
    fid = f', "fidelity": <one of {list(fidelities)}>' if fidelities else ""
    where = ("" if fidelities else f" The run is at the target fidelity {problem.target}.")
    snap = "" if by_id else " The configuration is snapped to the nearest one the sweep ran."
    return (f'Reply with one JSON object: {{"reasoning": "<at most three sentences: which '
            f'cheap-fidelity trend you extrapolate and what you expect at the target>"{fid}, '
            f'{choice}}}.{where}{snap}')
