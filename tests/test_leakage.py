"""A test experiment's target outcomes must never reach what an optimizer sees; nor may the
order of the tables."""

import dataclasses
import inspect
import os
import random
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping

import numpy as np
import pandas as pd
import pytest
from ConfigSpace import ConfigurationSpace

from bench.episode import play_episode, run_episode
from bench.gym.problem import Budget, Pool, Query
from bench.gym.registry import load_task
from bench.gym.spec import TaskSpec, build_task
from bench.gym.task import Prior, method_seed
from bench.methods import MethodSpec, methods
from bench.optimizer import Optimizer
from bench.store import EpisodeKey, Store

# Learned methods and LLM agents are checked by their own tests (tiny training; a fake server).
RUNNABLE = [m for m, spec in methods().items()
            if not spec.missing() and not spec.learned and spec.family != "llm"]


def _visible(problem):
    return problem.prior, {f: problem.candidates(f) for f in problem.pools}, problem.description


@pytest.fixture(scope="module")
def mixture():
    return load_task("data_mixture")


def test_prior_holds_only_cheaper_fidelities(mixture):
    for exp in mixture.split("test"):
        p = mixture.problem(exp, Budget("trials", 5))
        assert p.target not in set(p.prior.fidelity)
        assert set(p.prior.fidelity) == {f.name for f in p.fidelities[:-1]}
        assert "value" not in p.candidates().columns
        assert len(p.candidates()) == 64  # the 1B pool, configurations only


def test_poisoning_target_outcomes_changes_nothing_visible(tiny_task):
    before = _visible(tiny_task.problem("b", Budget("trials", 3)))
    target = tiny_task.experiment("b").target.name
    mask = (tiny_task.table.experiment == "b") & (tiny_task.table.fidelity == target)
    table = tiny_task.table.copy()
    table.loc[mask, "value"] = -999.0
    poisoned = dataclasses.replace(tiny_task, table=table)
    after = _visible(poisoned.problem("b", Budget("trials", 3)))
    pd.testing.assert_frame_equal(before[0], after[0])
    for f in before[1]:
        pd.testing.assert_frame_equal(before[1][f], after[1][f])
    assert before[2] == after[2]
    assert -999.0 in poisoned.oracle("b").target_values()  # the oracle does see it


def test_no_prior_policy(tiny_task):
    assert tiny_task.problem("b", Budget("trials", 3), prior="none").prior.empty


def with_noise_at_target(task, experiment: str, seed: int = 1):
    """A copy of `task` whose target outcomes of `experiment` are replaced by noise."""
    table = task.table.copy()
    mask = (table.experiment == experiment) & (table.fidelity == task.experiment(experiment).target.name)
    rng = np.random.default_rng(seed)
    table.loc[mask, "value"] = rng.permutation(table.loc[mask, "value"].to_numpy()) + rng.normal(
        0, 1, int(mask.sum()))
    return dataclasses.replace(task, table=table)


@pytest.mark.parametrize("method", RUNNABLE)
@pytest.mark.parametrize("budget, prior", [(Budget("trials", 3), "cheaper"), (Budget("cost", 1), "none")])
def test_first_target_query_ignores_target_outcomes(method, budget, prior):
    """Everything a method asks before its first target observation is the same whether the
    target outcomes are real or noise: they cannot have reached it."""
    task = load_task("pretrain_hparams")
    exp = "moe-3in8-D20B"  # a test experiment; 4 fidelities of 45 runs
    real = asks_before_target(task, exp, methods()[method], budget, 0, prior)
    noisy = asks_before_target(with_noise_at_target(task, exp), exp, methods()[method], budget, 0, prior)
    assert real == noisy and len(real) >= 1


class FirstRow(Optimizer):
    """Takes the first untried candidate in the order it is given: what a naive method does."""

    def ask(self) -> Query:
        return self.query(self.untried().iloc[0].to_dict())


def test_table_order_carries_no_information(tmp_path):
    """The row order of a source can encode the outcome (here: sorted best first). A method
    that reads the first row scores like random search, in expectation over seeds."""
    task = load_task("pretrain_hparams")
    exp = "dense-N1.07B-D56.9B"
    table = task.table.sort_values(["experiment", "fidelity", "value"], kind="stable")
    sorted_task = dataclasses.replace(task, table=table.reset_index(drop=True))
    target = task.experiment(exp).target.name
    assert table[(table.experiment == exp) & (table.fidelity == target)]["value"].is_monotonic_increasing
    spec = MethodSpec(name="first-row", cls="tests.test_leakage:FirstRow", family="test")
    scores = []
    for seed in range(40):
        key = EpisodeKey("s", task.name, "first-row", exp, "trials", 1, seed)
        scores.append(run_episode(key, sorted_task, spec, Store(tmp_path)).best)
    values = sorted_task.oracle(exp).target_values()
    optimum = values.min()
    assert np.mean(np.isclose(scores, optimum)) < 0.2  # it would be 1.0 if order leaked
    # Same mean as a random draw (the pool's mean), within 3 standard errors.
    assert abs(np.mean(scores) - values.mean()) < 3 * values.std() / np.sqrt(len(scores))


# --- Adversarial checks of the fixes: canonical order, the attribute walk, the method seed, pools.

SLOW = {"smac-hpo", "smac-bb", "smac-mf", "botorch-ei", "botorch-mf"}  # one seed each


def by_outcome(task, best_first: bool):
    """`task` rebuilt from its table sorted by outcome, best or worst first (a source's order)."""
    ascending = best_first == (task.objective.direction == "minimize")
    table = task.table.sort_values("value", ascending=ascending, kind="stable", ignore_index=True)
    return dataclasses.replace(task, table=table)


def asks_before_target(task, experiment, spec, budget, seed, prior="cheaper"):
    """What a method asks up to and including its first target-fidelity query (cheap outcomes
    told), given the seed the harness gives it."""
    problem = task.problem(experiment, budget, prior, seed=seed)
    oracle = task.oracle(experiment, seed=seed)
    opt = spec.make(problem, method_seed(seed))
    asked = []
    while opt.affordable() and len(asked) < 50:
        q = opt.ask()
        asked.append((q.fidelity, q.config, q.candidate))
        if q.fidelity == problem.target:
            break
        if q.fidelity in opt.affordable():
            opt.tell(q, oracle.evaluate(q))
    return asked


@pytest.mark.parametrize("method", RUNNABLE)
def test_row_order_changes_no_ask(method, tiny_task):
    """Catches: a task that keeps its source's row order (no `canonical_table`), or a method
    that reads anything order-dependent (pool ids in table order, an unshuffled prior, a seed
    tied to the table). The same rows sorted best-first and worst-first must give identical
    canonical tables and identical asks before the first target observation."""
    real = load_task("pretrain_hparams")
    cases = [(tiny_task, "b", Budget("trials", 2)), (tiny_task, "b", Budget("cost", 2)),
             (real, "dense-N1.07B-D56.9B", Budget("trials", 3))]
    seeds = [0] if method in SLOW else [0, 1, 2]
    spec = methods()[method]
    for task, exp, budget in cases:
        best, worst = by_outcome(task, True), by_outcome(task, False)
        pd.testing.assert_frame_equal(best.table, worst.table)
        for seed in seeds:
            a = asks_before_target(best, exp, spec, budget, seed)
            b = asks_before_target(worst, exp, spec, budget, seed)
            assert a == b and a, (task.name, budget, seed)


def test_canonical_table_ignores_source_order(tiny_task):
    """Catches: `Task.__post_init__` not canonicalising (or canonicalising by value)."""
    real = load_task("pretrain_hparams")
    for task in (tiny_task, real):
        rng = np.random.default_rng(0)
        shuffled = task.table.iloc[rng.permutation(len(task.table))].reset_index(drop=True)
        tables = [by_outcome(task, True).table, by_outcome(task, False).table,
                  dataclasses.replace(task, table=shuffled).table]
        for t in tables:
            pd.testing.assert_frame_equal(t, task.table)
        exp = task.split("test")[0]
        values = task.outcomes(exp, task.experiment(exp).target.name)["value"]
        assert not (values.is_monotonic_increasing or values.is_monotonic_decreasing)


# The attribute walk -------------------------------------------------------------------------

def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "biuf"


def walk(obj, path="problem", out=None, seen=None, depth=0):
    """Every 1-D numeric array reachable from `obj` (each column of a 2-D one), as
    {path: array}: dataclass fields and instance attributes (private ones too: Python hides
    nothing), properties and cached properties that do not raise, zero-argument methods of the
    bench's own classes, mappings, sequences, arrays, frames (columns and index) and series."""
    out = {} if out is None else out
    seen = {} if seen is None else seen  # id -> object: kept alive, so that no id is reused
    if isinstance(obj, int | np.integer) and not isinstance(obj, bool | np.bool_):
        out[path] = np.array([obj])  # a scalar that could name a candidate
        return out
    if depth > 8 or obj is None or isinstance(obj, str | bytes | bool | float | np.generic
                                                   | ConfigurationSpace):
        return out
    if id(obj) in seen:
        return out
    seen[id(obj)] = obj
    if isinstance(obj, np.ndarray):
        if not _numeric(obj):
            for i, v in enumerate(obj.ravel()[:1000]):
                walk(v, f"{path}[{i}]", out, seen, depth + 1)
        elif obj.ndim == 1:
            out[path] = obj
        elif obj.ndim == 2:
            for j in range(obj.shape[1]):
                out[f"{path}[:, {j}]"] = obj[:, j]
        return out
    if isinstance(obj, pd.DataFrame):
        for c in obj.columns:
            walk(obj[c], f"{path}[{c!r}]", out, seen, depth + 1)
        walk(obj.index, f"{path}.index", out, seen, depth + 1)
        return out
    if isinstance(obj, pd.Series):
        walk(obj.to_numpy(), f"{path}.values", out, seen, depth + 1)
        walk(obj.index, f"{path}.index", out, seen, depth + 1)
        return out
    if isinstance(obj, pd.Index):
        walk(obj.to_numpy(), path, out, seen, depth + 1)
        return out
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            walk(v, f"{path}[{k!r}]", out, seen, depth + 1)
        return out
    if isinstance(obj, tuple | list | set | frozenset):
        items = list(obj)
        if items and all(isinstance(v, int | float | np.number) for v in items):
            out[path] = np.asarray(items)
        elif items and all(isinstance(v, Mapping) for v in items):  # records: by column
            walk(pd.DataFrame.from_records(items), f"{path}<records>", out, seen, depth + 1)
        else:
            for i, v in enumerate(items[:1000]):
                walk(v, f"{path}[{i}]", out, seen, depth + 1)
        return out
    if callable(obj) and not hasattr(obj, "__dict__"):
        return out
    names = set(vars(obj)) if hasattr(obj, "__dict__") else set()
    names |= {n for n in dir(type(obj)) if not n.startswith("_")}
    names |= {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()
    ours = type(obj).__module__.startswith(("bench", "tests"))
    for name in sorted(n for n in names if not n.startswith("__")):
        try:
            value = getattr(obj, name)
        except Exception:
            continue
        if inspect.ismethod(value) or inspect.isfunction(value) or inspect.isbuiltin(value):
            if not ours or name.startswith("_") or isinstance(inspect.getattr_static(obj, name), classmethod):
                continue
            try:
                if any(p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
                       for p in inspect.signature(value).parameters.values()):
                    continue  # needs arguments
                value = value()
            except Exception:
                continue
            walk(value, f"{path}.{name}()", out, seen, depth + 1)
        elif not isinstance(value, type):
            walk(value, f"{path}.{name}", out, seen, depth + 1)
    return out


def pointers(a: np.ndarray, n: int) -> dict[str, int]:
    """The candidate ids array `a` could point at in a pool of `n`: its argmin and argmax when it
    is aligned with the pool (length n), its first and last elements when it holds ids."""
    a = np.asarray(a)
    out = {}
    as_float = a.astype(float)
    if len(a) == n and np.isfinite(as_float).any():
        out["argmin"] = int(np.nanargmin(np.where(np.isfinite(as_float), as_float, np.nan)))
        out["argmax"] = int(np.nanargmax(np.where(np.isfinite(as_float), as_float, np.nan)))
    if len(a) and a.dtype.kind != "b" and np.isfinite(as_float).all() \
            and np.all(as_float == np.round(as_float)) and as_float.min() >= 0 and as_float.max() < n:
        out["[0]"], out["[-1]"] = int(as_float[0]), int(as_float[-1])
    return out


def random_task(seed: int):
    """A fresh task whose outcomes are noise (so the optimum is a random configuration), two
    fidelities of the same 48 configurations, built from a source sorted best-first."""
    rng = np.random.default_rng(seed)
    rows = [{"lr": lr, "bs": bs, "params": p, "tokens": t, "loss": rng.normal()}
            for p, t in ((1e7, 1e9), (1e8, 1e10))
            for lr in 10.0 ** np.linspace(-4, -2, 8) for bs in (32, 64, 128, 256, 512, 1024)]
    source = pd.DataFrame(rows).sort_values(["params", "loss"], ignore_index=True)  # best first
    spec = TaskSpec(name="rand", objective={"column": "loss", "direction": "minimize"},
                    config=["lr", "bs"], fidelity=["params", "tokens"])
    return build_task(spec, source)


@dataclasses.dataclass(frozen=True)
class LeakyPool(Pool):
    """The old bug, re-created: a pool that also says which source row each candidate came from
    (`order`), and the ids of the three best (`top`)."""

    order: np.ndarray | None = None
    top: tuple = ()


def optimum_id(task, experiment, seed) -> tuple[int, np.ndarray]:
    """The target optimum's candidate id in the episode with `seed`, from the oracle, and the
    target values by candidate id."""
    oracle, target = task.oracle(experiment, seed), task.experiment(experiment).target.name
    n = len(task.outcomes(experiment, target))
    values = np.array([oracle.evaluate(Query({}, target, i)).value for i in range(n)])
    return int(np.argmin(task.objective.sign * values)), values


SEEDS, MAX_HITS = range(20), 5  # with 48 candidates, P(any path > 5 hits by chance) ~ 1e-3


def pointer_hits(leaky: bool = False) -> tuple[Counter, set]:
    """How often each (path, pointer) names the target optimum, over fresh random tasks."""
    hits, paths = Counter(), set()
    for seed in SEEDS:
        task = random_task(seed)
        best, values = optimum_id(task, "rand", seed)
        for budget in (Budget("trials", 3), Budget("cost", 2)):
            problem = task.problem("rand", budget, seed=seed)
            n = len(problem.arrays())
            assert n == 48 and problem.arrays().records[best] == \
                task.oracle("rand", seed).evaluate(Query({}, problem.target, best)).config
            if leaky:
                pool = problem.arrays()
                rank = np.argsort(np.argsort(values))  # row of each candidate in the best-first source
                bad = LeakyPool(pool.records, pool.x, pool.columns, order=rank,
                                top=tuple(int(i) for i in np.argsort(values)[:3]))
                problem = dataclasses.replace(problem, pools={**problem.pools, problem.target: bad})
            for path, a in walk(problem, f"{budget.kind}:problem").items():
                paths.add(path)
                for name, i in pointers(a, n).items():
                    hits[(path, name)] += i == best
    return hits, paths


def test_nothing_reachable_from_a_problem_points_at_the_optimum():
    """Catches: any array reachable from a Problem that encodes the target outcomes' order, e.g.
    the old `Pool.order`/`Pool.source` (the source row of each candidate: its argmin named the
    optimum in 10 of 10 seeds), a rank, a best-first id list, a mask of the best."""
    hits, paths = pointer_hits()
    expected = {"trials:problem.arrays().x[:, 0]", "cost:problem.pools['params=10M,tokens=1B'].x[:, 0]",
                "trials:problem.prior['value'].values", "trials:problem.prior_arrays[2]"}
    assert expected <= paths, sorted(paths)  # the walk reaches the pools and the prior
    leaks = {k: v for k, v in hits.items() if v > MAX_HITS}
    assert not leaks, f"paths pointing at the optimum (hits of {len(SEEDS)}): {leaks}"


def test_walk_catches_the_old_leak():
    """The walk itself: a pool carrying the source row of each candidate is flagged by argmin,
    and a short list of the best ids by its first element."""
    hits, _ = pointer_hits(leaky=True)
    flagged = {k for k, v in hits.items() if v > MAX_HITS}
    assert any(p.endswith(".order") and name == "argmin" for p, name in flagged), flagged
    assert any(p.endswith(".top") and name == "[0]" for p, name in flagged), flagged


# The method seed ----------------------------------------------------------------------------

class SeedSpy(Optimizer):
    """Records the seed it is given and a draw from the global generators it finds."""

    seen: list = []

    def __init__(self, problem, seed):
        super().__init__(problem, seed)
        SeedSpy.seen.append((seed, np.random.random(), random.random()))

    def ask(self) -> Query:
        return self.query_candidate(int(self.rng.integers(len(self.problem.arrays()))))


class _NoLog:
    def append(self, record):
        pass


def test_method_seed_is_a_salted_hash_independent_of_the_shuffles(tiny_task):
    """Catches: the optimizer (or the global generators) seeded with the episode seed, from
    which a method recomputes the candidate and prior shuffles (`task.permutation`); a seed
    that is the identity, collides, or depends on the process (`hash()`)."""
    seeds = list(range(200))
    ms = [method_seed(s) for s in seeds]
    assert all(m != s for m, s in zip(ms, seeds, strict=True))
    assert len(set(ms)) == len(ms)
    assert all(0 <= m < 2**32 for m in ms)  # numpy's RandomState (Optuna, SMAC) takes 32-bit seeds
    assert ms == [method_seed(s) for s in seeds]
    code = "from bench.gym.task import method_seed; print([method_seed(s) for s in range(5)])"
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": "12345"})
    assert other.stdout.strip() == str(ms[:5])

    task = load_task("pretrain_hparams")
    exp = "dense-N1.07B-D56.9B"
    target = task.experiment(exp).target.name
    for s in range(10):
        episode = task.permutation(exp, target, s)
        assert not np.array_equal(task.permutation(exp, target, method_seed(s)), episode)
        assert not np.array_equal(np.random.default_rng(method_seed(s)).permutation(len(episode)), episode)
        rows = task.prior_rows(exp, "cheaper", [s])[1]
        assert not np.array_equal(task.prior_rows(exp, "cheaper", [method_seed(s)])[1], rows)

    # What the harness hands the optimizer, and how it seeds the global generators.
    spec = MethodSpec(name="seed-spy", cls="tests.test_leakage:SeedSpy", family="test")
    SeedSpy.seen.clear()
    for s in (0, 1, 7):
        key = EpisodeKey("s", tiny_task.name, "seed-spy", "b", "trials", 1, s)
        summary, error = play_episode(key, tiny_task, spec, _NoLog())
        assert error is None, error
        seed, np_draw, py_draw = SeedSpy.seen[-1]
        assert seed == method_seed(s) != s
        np.random.seed(s)
        random.seed(s)
        assert np_draw != np.random.random() and py_draw != random.random()


# What `pools` holds -------------------------------------------------------------------------

@pytest.mark.parametrize("gap", [None, 4.0, 10.0])
def test_pools_hold_the_target_and_the_given_fidelities(gap):
    """Catches: `pools` exposing a rung the suite withholds (the configurations a lab chose to
    run at an expensive fidelity), or missing one an episode may query."""
    task = load_task("pretrain_hparams")
    exp = task.experiment("dense-N1.07B-D56.9B")
    prior = Prior(gap=gap)
    limit = exp.target.cost / gap if gap else np.inf
    given = {f.name for f in exp.fidelities[:-1] if f.cost <= limit}
    if gap:
        assert 0 < len(given) < len(exp.fidelities) - 1  # the gap withholds some rungs
    trials = task.problem(exp.name, Budget("trials", 3), prior)
    assert set(trials.pools) == given | {exp.target.name}
    assert set(trials.prior.fidelity) == given
    for f in {f.name for f in exp.fidelities} - set(trials.pools):
        with pytest.raises(KeyError):
            trials.candidates(f)
    cost = task.problem(exp.name, Budget("cost", 2), prior)
    assert set(cost.pools) == {f.name for f in exp.fidelities}
    for f, pool in cost.pools.items():  # each pool is that fidelity's candidates, all of them
        table = task.outcomes(exp.name, f)[trials.params]
        assert sorted(map(tuple, pool.configs[trials.params].to_numpy().tolist())) == \
            sorted(map(tuple, table.to_numpy().tolist()))
    assert set(task.problem(exp.name, Budget("trials", 3), "none").pools) == {exp.target.name}
