"""Meta-training of learned methods (`bench.optimizer.LearnedOptimizer`) on a task's `train`
experiments, and their checkpoints.

`TrainingData` holds a copy of the task restricted to its train experiments: the test experiments
are not in it, so no training can read their outcomes (a test trains on a copy whose test-
experiment outcomes are noise and gets the same state digest). Its episodes are drawn with the
protocols the method is tested under (`paper`: every cheaper run as prior; `far`: the task's gap
and prior budget), so training matches testing.

A preset with `trains_on: builtin` is trained once on every built-in task's train experiments
(`meta_train` then gets a tuple of `TrainingData`, one per task) and its checkpoint serves any
task, a user's spec included.

Checkpoints live in `$BENCH_CACHE/checkpoints/<task or builtin>/<method>-<hash>.pt`; the hash
covers the method's class, parameters and VERSION, the training seed and the content of the train
data, so a change in any of them trains afresh. The package ships reference checkpoints of the
built-in tasks' fixed splits and the cross-family one under the same names
(`SHIPPED`, written by `scripts/reference_checkpoints.py`, which also checks that retraining
reproduces them), so a fresh install runs them without training. Each records what it was trained
on (`Checkpoint.meta`): task, fit and validation experiments, data fingerprint, code version,
seed, seconds, and the validation score (`validation_pregret`: mean pregret, the harness's primary
score, over episodes of the validation experiments, scored by `Task.scorer` with the failure rule;
a method that learns from every train experiment and selects on inner folds reports its own out-
of-fold score as `validation_by_task` in its state's report, and that is recorded instead).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

from bench.errors import BenchError
from bench.gym.problem import Budget, Problem
from bench.gym.suites import load_suite
from bench.gym.task import Oracle, Prior, Task
from bench.loop import play
from bench.optimizer import Checkpoint
from bench.paths import cache_dir

VALIDATION_SHARE = 0.2  # of the train experiments, held out to validate (whole groups, >= 1 of 2+)
VALIDATION_BUDGET = 5  # target trials per validation episode
VALIDATION_SEEDS = 3
PROTOCOL_SUITES = ("paper", "far")  # episodes for training are drawn with these suites' priors
BUDGETS = (1, 3, 5, 10)  # trial budgets of the paper's protocol


@dataclass
class TrainingData:
    """What a learned method may learn from: one task's train experiments, split into `fit` and
    `validation` by whole groups (`validation_groups`)."""

    task: Task  # restricted to the train experiments
    fit: list[str]
    validation: list[str]
    priors: tuple[Prior, ...]  # the protocols it is tested under
    weights: dict[str, float] | None = None  # how often `draw` picks each fit experiment (None: equally)

    @classmethod
    def of(cls, task: Task, seed: int = 0) -> TrainingData:
        train = task.split("train")
        if not train:
            raise BenchError(f"task {task.name} has no train experiments to learn from")
        validation = validation_groups(task, train, seed)
        fit = sorted(set(train) - set(validation))
        priors = tuple(dict.fromkeys(load_suite(s).prior_for(task.name) for s in PROTOCOL_SUITES))
        return cls(train_only(task), fit, validation or fit, priors)

    @property
    def experiments(self) -> list[str]:
        """Every train experiment (`fit` and `validation`)."""
        return sorted(set(self.fit) | set(self.validation))

    def inner_folds(self, k: int) -> list[TrainingData]:
        """`k` inner grouped folds of the train experiments (`Task.folds` of the train-only task:
        no group straddles fit and validation): fold i validates on the i-th fold's experiments
        (the (i mod n)-th when the task has n < k folds) and fits on the others. With fewer than 2
        groups every train experiment fits and validates, as in `of`."""
        folds = self.task.folds(k)
        if len(folds) < 2:
            return [dataclasses.replace(self, fit=self.experiments, validation=self.experiments)] * k
        out = []
        for i in range(k):
            held = folds[i % len(folds)]
            fit = sorted(set(self.experiments) - set(held))
            out.append(dataclasses.replace(self, fit=fit, validation=held))
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the train table's content (rows in a canonical order)."""
        table = self.task.table.sort_values(list(self.task.table.columns), kind="stable")
        digest = hashlib.sha256(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes())
        return digest.hexdigest()

    def draw(self, rng: np.random.Generator, experiments: list[str] | None = None,
             budgets: tuple[int, ...] = BUDGETS) -> tuple[str, Prior, int]:
        """A random experiment (of `experiments`, default `fit` by `weights`), protocol (among those
        the experiment offers) and trial budget (at most half the target pool), as the test suites
        combine them."""
        if experiments is None and self.weights is not None:
            p = np.array([self.weights[e] for e in self.fit])
            exp = self.fit[int(rng.choice(len(p), p=p / p.sum()))]
        else:
            experiments = experiments or self.fit
            exp = experiments[int(rng.integers(len(experiments)))]
        offered = [p for p in self.priors if self.task.offers(exp, p)] or [Prior("cheaper")]
        prior = offered[int(rng.integers(len(offered)))]  # a gap no rung meets is not drawn
        pool = len(self.task.arrays(exp, self.task.experiment(exp).target.name)[0])
        fits = [b for b in budgets if b <= pool / 2] or [1]
        return exp, prior, fits[int(rng.integers(len(fits)))]

    def episodes(self, rng: np.random.Generator, experiments: list[str] | None = None,
                 budgets: tuple[int, ...] = BUDGETS) -> Iterator[tuple[Problem, Oracle]]:
        """Endless episodes, each `draw`n with its own episode seed."""
        while True:
            exp, prior, budget = self.draw(rng, experiments, budgets)
            seed = int(rng.integers(2**31))
            yield self.task.problem(exp, Budget("trials", budget), prior, seed), self.task.oracle(exp, seed)


def validation_groups(task: Task, train: list[str], seed: int) -> list[str]:
    """The validation experiments: whole groups (`Task.groups`: experiments that share runs
    never straddle fit and validation), about `VALIDATION_SHARE` of `train`. The train groups in
    a seeded random order; each is taken while the total stays within the share (rounded, at
    least one experiment); if none fits, the first smallest group. None with fewer than 2 groups
    (then the fit experiments validate)."""
    members = set(train)
    groups = [g for g in ([e for e in es if e in members] for es in task.groups().values()) if g]
    if len(groups) < 2:
        return []
    share = max(1, round(VALIDATION_SHARE * len(train)))
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    chosen: list[str] = []
    for group in order:
        if len(chosen) + len(group) <= share:
            chosen += group
    return sorted(chosen or min(order, key=len))


def train_only(task: Task) -> Task:
    """A copy of `task` holding only its train experiments (table and experiment list)."""
    train = task.split("train")
    table = task.table[task.table["experiment"].isin(train)].reset_index(drop=True)
    return dataclasses.replace(task, experiments={e: task.experiments[e] for e in train}, table=table)


def state_digest(state: dict) -> str:
    """SHA-256 over a state's keys and values (tensor bytes), for bit-identity checks."""
    import torch

    h = hashlib.sha256()

    def feed(key: str, v) -> None:
        h.update(key.encode())
        if isinstance(v, torch.Tensor):
            h.update(str(v.dtype).encode() + str(tuple(v.shape)).encode())
            h.update(v.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        elif isinstance(v, dict):
            for k in sorted(v):
                feed(f"{key}.{k}", v[k])
        elif isinstance(v, list | tuple):
            for i, item in enumerate(v):
                feed(f"{key}[{i}]", item)
        else:
            h.update(repr(v).encode())

    feed("", state)
    return h.hexdigest()


Data = TrainingData | tuple[TrainingData, ...]


def training_data(spec, task: Task, seed: int = 0) -> Data:
    """What `spec` learns from: `task`'s train experiments, or every built-in task's."""
    if spec.trains_on == "builtin":  # a cv fold of a built-in task stands for that task
        from bench.gym.registry import load_task, task_names

        return tuple(TrainingData.of(task if name == task.name else load_task(name), seed)
                     for name in task_names())
    return TrainingData.of(task, seed)


def _each(data: Data) -> tuple[TrainingData, ...]:
    return data if isinstance(data, tuple) else (data,)


def _scope(data: Data) -> str:
    """Where a checkpoint is filed: `builtin`, or the task, with its cv fold if any."""
    folds = [f"{d.task.name}-{d.task.fold}" for d in _each(data) if d.task.fold]
    if isinstance(data, tuple):
        return "-".join(["builtin", *folds])
    return folds[0] if folds else data.task.name


def checkpoint_path(spec, data: Data, seed: int) -> Path:
    cls = spec.load_class()
    identity = {"class": spec.cls, "params": spec.params, "version": cls.VERSION,
                "task": _scope(data), "data": [d.fingerprint() for d in _each(data)], "seed": seed}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:16]
    folder = cache_dir() / "checkpoints" / quote(_scope(data), safe="")
    return folder / f"{quote(spec.name, safe='')}-{digest}.pt"


SHIPPED = Path(__file__).parent / "checkpoints"  # reference checkpoints (scripts/reference_checkpoints.py)


def shipped_path(path: Path) -> Path:
    """Where the package ships the checkpoint whose cache path is `path`: the same scope and file
    name (the name's hash covers class, parameters, version, scope, train data and seed)."""
    return SHIPPED / path.relative_to(cache_dir() / "checkpoints")


def trained_path(spec, task: Task, seed: int = 0) -> Path | None:
    """The checkpoint `train` would load without training (the shipped one, else the cache's), or
    None."""
    return _existing(checkpoint_path(spec, training_data(spec, task, seed), seed))


def _existing(path: Path) -> Path | None:
    """The checkpoint filed under cache path `path`: the package's copy, else the cache's, or None."""
    shipped = shipped_path(path)
    return shipped if shipped.is_file() else path if path.exists() else None


def train(spec, task: Task, seed: int = 0, progress: Callable[[float], None] | None = None,
          force: bool = False) -> tuple[Checkpoint, Path]:
    """Meta-train `spec` on `task`'s train experiments (or every built-in task's, `trains_on:
    builtin`), or load the checkpoint that exists: the one the package ships (`SHIPPED`), else
    the cache's. `force` trains again into the cache."""
    import torch
    from filelock import FileLock

    data = training_data(spec, task, seed)
    path = checkpoint_path(spec, data, seed)
    if not force and (found := _existing(path)):
        return load(found), found
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock"):  # two runs training the same checkpoint: one trains
        if path.exists() and not force:
            return load(path), path
        cls = spec.load_class()
        torch.manual_seed(seed)
        t0 = time.perf_counter()
        state = cls.meta_train(data, seed, progress or (lambda _: None), **spec.params)
        seconds = time.perf_counter() - t0
        trained = Checkpoint(state, {
            "method": spec.name, "class": spec.cls, "params": spec.params,
            "version": cls.VERSION, "task": _scope(data),
            "fit": [e for d in _each(data) for e in d.fit],
            "validation": [e for d in _each(data) for e in d.validation],
            "data": [d.fingerprint() for d in _each(data)], "seed": seed,
            "train_seconds": seconds, "report": state.get("report"),
            "digest": state_digest({k: v for k, v in state.items() if k != "report"})})
        # a method that trained on every train experiment gives its own held-out (inner-fold) score
        per_task = (state.get("report") or {}).get("validation_by_task") or {
            d.task.name: validate(spec, trained, d, seed) for d in _each(data)}
        trained.meta["validation_pregret"] = float(np.mean(list(per_task.values())))
        trained.meta["validation_by_task"] = per_task
        tmp = path.with_suffix(".tmp")
        torch.save({"state": trained.state, "meta": trained.meta}, tmp)
        os.replace(tmp, path)
    load.cache_clear()
    return trained, path


@functools.lru_cache(maxsize=16)
def load(path: Path) -> Checkpoint:
    import torch

    try:
        blob = torch.load(path, weights_only=True)
        return Checkpoint(blob["state"], blob["meta"])
    except Exception as exc:  # a truncated or foreign file
        raise BenchError(f"checkpoint {path} is unreadable ({type(exc).__name__}); delete it and "
                         "run `bench train` again") from exc


_IN_USE: dict[tuple, Checkpoint] = {}  # (preset, id(task), seed, cache) -> checkpoint


def checkpoint_for(spec, task: Task, seed: int = 0) -> Checkpoint:
    """The checkpoint an episode of `spec` on `task` uses (`MethodSpec.make` takes it); trained
    here if it does not exist (`bench run` trains before it dispatches episodes); kept in memory
    per process (per preset, task object, seed and cache folder)."""
    key = (spec.model_dump_json(), id(task), seed, str(cache_dir()))  # a cv fold is a task of its own
    if key not in _IN_USE:
        _IN_USE[key] = train(spec, task, seed)[0]
    return _IN_USE[key]


def validate(spec, checkpoint: Checkpoint, data: TrainingData, seed: int) -> float:
    """Mean pregret (`Task.scorer`) of the trained method over episodes of the validation
    experiments (`VALIDATION_SEEDS` per experiment, `VALIDATION_BUDGET` target trials, each
    protocol); an episode without a target value scores as a failure (pregret 1)."""
    scores = []
    for exp in data.validation:
        scorer = data.task.scorer(exp)
        budget = Budget("trials", min(VALIDATION_BUDGET, max(1, len(scorer.values) // 2)))
        for prior in data.priors:
            if not data.task.offers(exp, prior):
                continue
            for s in range(VALIDATION_SEEDS):
                problem = data.task.problem(exp, budget, prior, seed=10_000 + s)
                optimizer = spec.make(problem, s, checkpoint)
                best = play(optimizer, data.task.oracle(exp, seed=10_000 + s), problem)
                episode = scorer.episode(best, [] if best is None else [best], failed=best is None)
                scores.append(episode["pregret"])
    return float(np.mean(scores)) if scores else float("nan")
