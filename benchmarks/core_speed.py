"""Speed of the gym core, each figure printed next to its goal (issue: a fast gym core).

    python benchmarks/core_speed.py                 # all sections
    python benchmarks/core_speed.py trial env       # some: trial, env, jobs, suite

- trial: harness overhead per trial, excluding the optimizer (an optimizer that asks candidate
  ids it chose before the episode; the marginal cost of a trial between episodes of 10 and 410
  trials, medians over 40 episodes), and per episode (problem, oracle, optimizer, scoring,
  marker); `random`'s ask next to Optuna's RandomSampler ask + tell on the same 17-dimensional
  space (data_mixture, 40 episodes of 10).
- env: one Gymnasium environment's step on data_mixture/pile_cc, resets included (random actions,
  episodes of 10 target trials, each reset with the next of 200 seeds in turn, so that the first
  pass over them misses the env's caches), and vector-environment steps per second (256 envs,
  same episodes, autoreset included).
- jobs: `bench run --jobs 2` against `--jobs 1` on three sweeps: the paper suite on data_mixture
  for random and best-prior (about 5 s of work: start-up dominates), the paper suite for random,
  centroid, best-prior and extrapolate on every built-in task (about 20 s), and the workload of
  the goal, about a minute: those four, Optuna's TPE, QMC, CMA-ES and warm TPE, NAP and MetaBO
  (shipped checkpoints) on the paper suite of every built-in task.
- suite: that second sweep with `--jobs 2`; compare with the wall time of the same command on an
  older checkout.
Numbers depend on the machine and its load; run it on an idle one.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.episode import run_episode
from bench.gym.problem import Query
from bench.gym.registry import load_task
from bench.methods import MethodSpec, methods
from bench.optimizer import Optimizer
from bench.store import EpisodeKey, Store

BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


class Preset(Optimizer):
    """Asks candidate ids drawn before the episode: an ask that costs (almost) nothing."""

    def __init__(self, problem, seed):
        super().__init__(problem, seed)
        self.ids = np.random.default_rng(seed).permutation(len(problem.arrays()))

    def ask(self) -> Query:
        return self.query_candidate(int(self.ids[len(self.history)]))


def _episodes(method: MethodSpec, budget: int, n: int = 40) -> tuple[float, float]:
    """(median wall seconds per episode excluding asks, ask seconds per trial) on
    data_mixture/pile_cc."""
    task = load_task("data_mixture")
    walls, ask = [], 0.0
    trials = 0
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(Path(tmp))
        for seed in range(n):
            key = EpisodeKey("bench", task.name, method.name, "pile_cc", "trials", budget, seed)
            t0 = time.perf_counter()
            s = run_episode(key, task, method, store)
            walls.append(time.perf_counter() - t0 - s.ask_seconds)
            ask += s.ask_seconds
            trials += s.trials
    return float(np.median(walls)), ask / trials


def _optuna_random(n: int = 400) -> float:
    import optuna

    from baselines.optuna_samplers import to_distributions

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = to_distributions(load_task("data_mixture").space)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    t0 = time.perf_counter()
    for _ in range(n):
        trial = study.ask(dists)
        study.tell(trial, 0.0)
    return (time.perf_counter() - t0) / n


def trial_section() -> None:
    load_task("data_mixture")
    preset = MethodSpec(name="preset", cls="core_speed:Preset", family="test")
    short, _ = _episodes(preset, 10)
    long, _ = _episodes(preset, 410)
    per_trial = (long - short) / 400  # the marginal cost of a trial; the rest is per episode
    _, random_ask = _episodes(methods()["random"], 10)
    print(f"harness overhead per trial (excluding the optimizer): {per_trial * 1e6:8.1f} us   goal <= 20 us")
    print(f"harness cost per episode (set-up, scoring, marker):   {(short - 10 * per_trial) * 1e3:8.2f} ms")
    print(f"random ask:                                           {random_ask * 1e6:8.1f} us   goal <= 50 us")
    print(f"Optuna RandomSampler ask+tell, same space:            {_optuna_random() * 1e6:8.1f} us")


def single_env_step(steps: int = 20_000, horizon: int = 10, seeds: int = 200) -> float:
    """Seconds per `ConfigEnv.step` on data_mixture/pile_cc, resets included: random actions,
    episodes of `horizon` target trials reset with seeds 0, 1, ..., `seeds` - 1, 0, 1, ..."""
    from bench.gym import make_env

    env = make_env("data_mixture", "pile_cc", suite="paper", budget=horizon)
    actions = np.random.default_rng(0).integers(env.action_space.n, size=steps).tolist()
    t0 = time.perf_counter()
    for i, a in enumerate(actions):
        if i % horizon == 0:
            env.reset(seed=i // horizon % seeds)
        env.step(a)
    return (time.perf_counter() - t0) / steps


def vector_env_rate(num: int = 256, steps: int = 400) -> float:
    """Vector-environment steps per second on data_mixture/pile_cc (T=10, autoreset)."""
    from bench.gym import make_vector_env

    env = make_vector_env("data_mixture", "pile_cc", num, suite="paper", budget=10)
    env.reset(seed=0)
    actions = np.random.default_rng(0).integers(env.single_action_space.n, size=(steps, num))
    t0 = time.perf_counter()
    for a in actions:
        env.step(a)
    return steps * num / (time.perf_counter() - t0)


def env_section() -> None:
    step = single_env_step()
    print(f"single env step (resets included) on data_mixture: {step * 1e6:6.1f} us   goal <= 10 us")
    print(f"vector env: {vector_env_rate():10.0f} steps/s (256 envs, T=10, autoreset)   goal >= 100,000")


def _wall(args: list[str]) -> float:
    with tempfile.TemporaryDirectory() as out:
        t0 = time.perf_counter()
        subprocess.run([*BENCH, *args, "--out", out, "--quiet"], check=True)
        return time.perf_counter() - t0


SMALL = ["run", "--task", "data_mixture", "--method", "random,best-prior", "--suite", "paper"]
SUITE = ["run", "--task", "all", "--method", "random,centroid,best-prior,extrapolate", "--suite", "paper"]


MINUTE = ["run", "--task", "all", "--suite", "paper", "--method",
          "random,centroid,best-prior,extrapolate,optuna-tpe,optuna-qmc,optuna-cmaes,optuna-tpe-warm,nap,metabo"]


def jobs_section() -> None:
    for name, args, goal in (("paper suite, data_mixture, random + best-prior", SMALL, ""),
                             ("paper suite, all tasks, 4 baselines", SUITE, ""),
                             ("paper suite, all tasks, 10 methods", MINUTE, "   goal >= 1.8x")):
        one, two = _wall([*args, "--jobs", "1"]), _wall([*args, "--jobs", "2"])
        print(f"{name}: --jobs 1 {one:.1f} s, --jobs 2 {two:.1f} s: {one / two:.2f}x{goal}")


def suite_section() -> None:
    wall = _wall([*SUITE, "--jobs", "2"])
    print(f"paper suite, all tasks, random + centroid + best-prior + extrapolate, --jobs 2: {wall:.1f} s")


SECTIONS = {"trial": trial_section, "env": env_section, "jobs": jobs_section, "suite": suite_section}

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))  # `core_speed:Preset` for the method registry
    unknown = sorted(set(sys.argv[1:]) - set(SECTIONS))
    if unknown:
        sys.exit(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(SECTIONS)}")
    for name in sys.argv[1:] or SECTIONS:
        SECTIONS[name]()
