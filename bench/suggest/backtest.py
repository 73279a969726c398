"""The backtest: the suggest loop on an experiment whose target is in the table, the table
answering in the user's place, scored as `bench run` scores an episode."""

from __future__ import annotations

from bench.errors import BenchError
from bench.gym.problem import Budget, Query
from bench.gym.suites import load_suite
from bench.gym.task import Task
from bench.loop import Trace
from bench.methods import MethodSpec
from bench.suggest.advice import NoTargetProposal, advise

BACKTEST_SUITE = "paper"  # its prior (every cheaper run) is what suggest gives: all the user's runs


def backtest(spec: MethodSpec, task: Task, experiment: str, seed: int, budget: int, n: int) -> dict:
    """`budget` rounds of one suggestion each, round t rebuilding the method and replaying the
    t - 1 runs the table answered (the scores `bench run` gives with that budget, method and
    seed), and the first round's `n` suggestions run at once."""
    prior = load_suite(BACKTEST_SUITE).prior_for(task.name)
    oracle = task.oracle(experiment, seed)
    scorer = oracle.scorer
    pool = len(scorer.values)
    if max(budget, n) > pool:
        raise BenchError(f"{experiment}: the target pool has {pool} candidates, fewer than {max(budget, n)}")
    trace, at_once = Trace(), Trace()
    failed = None
    try:
        for t in range(budget):
            problem = task.problem(experiment, Budget("trials", budget), prior, seed)
            advice = advise(spec, problem, seed, task, lambda k, _q: trace.outcomes[k], t, n if t == 0 else 1)
            if t == 0:
                for outcome in [oracle.evaluate(Query(s.config, problem.target, s.candidate))
                                for s in advice.suggestions]:
                    at_once.record(outcome, problem)
            trace.record(oracle.evaluate(advice.queries[0]), problem)
    except BenchError:
        raise
    except NoTargetProposal:  # the episode ends: what it ran is scored
        failed = None if trace.outcomes else "no target observation"
    except Exception as exc:  # scored as the benchmark scores a failed episode
        failed = f"{type(exc).__name__}: {exc}"
    scores = scorer.episode(trace.best, trace.curve, failed is not None, trace.best_diverged, budget)
    once = at_once.best
    at_once_scores = scorer.episode(once, [] if once is None else [once], failed is not None,
                                    at_once.best_diverged)
    return {"method": spec.name, "experiment": experiment, "seed": seed, "budget": budget, "n": n,
            "curve": trace.curve, "best": scores["value"], "pregret": scores["pregret"],
            "regret": scores["regret"], "nregret": scores["nregret"], "diverged": scores["diverged"],
            "pregret_at_once": at_once_scores["pregret"], "nregret_at_once": at_once_scores["nregret"],
            "failed": failed}
