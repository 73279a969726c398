"""Gymnasium front door to the gym's episodes (`make_env`, `make_vector_env`).

The same episodes as the harness (`bench.episode`), under the same rules (`bench.gym.rules`): one
(task, experiment, seed) gives the same candidate ids (`Task.permutation`), the same prior
(`Task.prior_rows`, with the suite's gap and prior budget), the same outcomes (`Task.arrays`) and
the same budget and refusal rules. Nothing in an observation comes from a target outcome the
agent has not obtained.

Observation (a `Dict`; F fidelities cheapest first, the last the target; N the largest pool the
episode is given; d the unit-cube width of the space; P the largest prior; H the most queries of
an episode):
  descriptors (F, D+1)    log10 of each fidelity's descriptors, then of its GPU-hours per run
  candidates (F, N, d)    unit-cube encodings, row i = candidate id i; candidate_mask (F, N)
  prior_x (P, d), prior_fidelity (P,), prior_value (P,), prior_mask (P,)   the cheap runs given
  history_x (H, d), history_fidelity (H,), history_value (H,), history_mask (H,)   the episode
  tried (F, N)            candidates already run;  budget_left (1,): share of the budget left
Values are oriented so that larger is better (`-objective.sign * value`), in the objective's
units; fidelity indices are -1 in padding rows. The candidates are those of `Problem.pools`: a
trial-budget episode is given the target and the prior's fidelities only, so a rung the suite
withholds (beyond the prior's gap, or every cheaper one without a prior) shows candidate_mask 0
and zeros; a cost-budget episode is given every fidelity.
Action: a target candidate id (`Discrete`) on trial budgets; `(fidelity, candidate id)`
(`MultiDiscrete`) on cost budgets, where a query that does not fit, or an id outside that
fidelity's pool, is refused (no outcome, no cost; `MAX_REFUSALS` in a row truncate the episode).
Reward: the improvement of the primary score (`bench.scores`), pregret(best before) -
pregret(best after), the best before any target run counting as pregret 1 (the failure rule);
the return is 1 - pregret(final best), so maximising it minimises the harness's trial-budget
score. `info`: `pregret`, `nregret`, `regret` (of the best target value so far; before any
target run the failure's: pregret 1, the worst candidate's nregret and regret), `value`,
`refused`. Every score comes from the experiment's `Scorer` (`Task.scorer`).

Train only on `train` experiments: the reward is computed from the target outcomes.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from bench.gym import rules
from bench.gym.problem import Budget, descriptor_matrix
from bench.gym.registry import load_task
from bench.gym.suites import load_suite
from bench.gym.task import Prior, Task


class EpisodeBatch:
    """The numpy state of B episodes of one experiment, stepped in lockstep."""

    def __init__(self, task: Task, experiment: str, budget: Budget, prior: Prior, num: int):
        self.task, self.experiment, self.budget, self.prior = task, experiment, budget, prior
        exp = task.experiment(experiment)
        self.fids = exp.fidelities
        self.costs = np.array([f.cost for f in self.fids])
        self.sign = task.objective.sign
        self.prior_levels = task.prior_fidelities(experiment, prior)  # a prefix of the fidelities
        # the levels the episode is given (`Task.given_fidelities`, as `Problem.pools`); a withheld
        # level has no candidates (mask 0, zeros; ids refused)
        given = {f.name for f in task.given_fidelities(experiment, budget, prior)}
        self.given = np.array([f.name in given for f in self.fids])
        self.levels = [task.arrays(experiment, f.name) if ok else None
                       for f, ok in zip(self.fids, self.given, strict=True)]
        self.x32 = [None if lv is None else lv[0].x.astype(np.float32) for lv in self.levels]
        self.sizes = np.array([0 if lv is None else len(lv[0]) for lv in self.levels])
        width = task.encoder.width
        n, f = int(self.sizes.max()), len(self.fids)
        prior_size = int(self.sizes[: len(self.prior_levels)].sum())
        self.prior_x = np.concatenate([self.x32[i] for i in range(len(self.prior_levels))] or
                                      [np.zeros((0, task.encoder.width), np.float32)])
        self.prior_value = np.concatenate([-self.sign * self.levels[i][1]
                                           for i in range(len(self.prior_levels))] or [np.zeros(0)])
        self.prior_value = self.prior_value.astype(np.float32)
        self.cap = budget.amount * (self.costs[-1] if budget.kind == "cost" else 1.0)
        self.horizon = rules.horizon(budget, self.costs)
        self.scorer = task.scorer(experiment)  # every score of the target pool (`bench.scores`)
        self.descriptors = descriptor_matrix(self.fids)
        self.num, self.shape = num, (f, n, width, max(prior_size, 1), max(self.horizon, 1))
        _, _, _, p, h = self.shape
        self.values = np.zeros((num, f, n))  # outcomes in each episode's candidate order
        self.obs = {
            "descriptors": np.broadcast_to(self.descriptors, (num, *self.descriptors.shape)),
            "candidates": np.zeros((num, f, n, width), np.float32),
            "candidate_mask": np.zeros((num, f, n), np.int8),
            "prior_x": np.zeros((num, p, width), np.float32),
            "prior_fidelity": np.full((num, p), -1.0, np.float32),
            "prior_value": np.zeros((num, p), np.float32),
            "prior_mask": np.zeros((num, p), np.int8),
            "history_x": np.zeros((num, h, width), np.float32),
            "history_fidelity": np.full((num, h), -1.0, np.float32),
            "history_value": np.zeros((num, h), np.float32),
            "history_mask": np.zeros((num, h), np.int8),
            "tried": np.zeros((num, f, n), np.int8),
            "budget_left": np.ones((num, 1), np.float32),
        }
        self.t = np.zeros(num, int)
        self.spent = np.zeros(num)
        self.refusals = np.zeros(num, int)
        self.best = np.full(num, np.nan)

    def single_space(self) -> spaces.Dict:
        f, n, width, p, h = self.shape
        box = lambda shape, lo=-np.inf, hi=np.inf: spaces.Box(lo, hi, shape, np.float32)  # noqa: E731
        return spaces.Dict({
            "descriptors": box(self.descriptors.shape), "candidates": box((f, n, width)),
            "candidate_mask": spaces.MultiBinary((f, n)), "prior_x": box((p, width)),
            "prior_fidelity": box((p,), -1, f - 1), "prior_value": box((p,)),
            "prior_mask": spaces.MultiBinary(p), "history_x": box((h, width)),
            "history_fidelity": box((h,), -1, f - 1), "history_value": box((h,)),
            "history_mask": spaces.MultiBinary(h), "tried": spaces.MultiBinary((f, n)),
            "budget_left": box((1,), 0, 1),
        })

    def single_action_space(self) -> spaces.Space:
        if self.budget.kind == "trials":
            return spaces.Discrete(int(self.sizes[-1]))
        return spaces.MultiDiscrete([len(self.fids), int(self.sizes.max())])

    def reset(self, rows, seeds) -> None:
        """Episodes `rows` become the episodes with `seeds` (as `Task.problem(..., seed=s)`)."""
        seeds = np.asarray(seeds, np.int64)
        rows = np.asarray(rows, int)
        if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
            rows = slice(int(rows[0]), int(rows[0]) + len(rows))  # a block: much faster writes
        o, n_max, p_max = self.obs, self.shape[1], self.shape[3]
        for level, (fid, arrays) in enumerate(zip(self.fids, self.levels, strict=True)):
            if arrays is None:  # withheld: stays masked and zero
                continue
            values = arrays[1]
            order = self.task.permutations(self.experiment, fid.name, seeds)
            n = order.shape[1]
            o["candidates"][rows, level, :n] = self.x32[level][order]
            o["candidate_mask"][rows, level] = np.arange(n_max) < n
            self.values[rows, level, :n] = values[order]
        levels, prior_rows, counts = self.task.prior_rows(self.experiment, self.prior, seeds)
        valid = np.arange(levels.shape[1])[None, :] < counts[:, None]
        if len(self.prior_levels):  # one flat table of the prior fidelities' runs
            offsets = np.cumsum([0, *self.sizes[: len(self.prior_levels)]])[:-1]
            flat = offsets[levels] + prior_rows
            width = levels.shape[1]
            o["prior_x"][rows, :width] = self.prior_x[flat]
            o["prior_value"][rows, :width] = self.prior_value[flat]
            if not valid.all():  # a prior budget cut: clear the padding
                o["prior_x"][rows, :width] *= valid[..., None]
                o["prior_value"][rows, :width] *= valid
        fidelity = np.full((len(seeds), p_max), -1.0, np.float32)
        fidelity[:, : levels.shape[1]] = np.where(valid, levels, -1)
        o["prior_fidelity"][rows] = fidelity
        o["prior_mask"][rows] = np.arange(p_max)[None, :] < counts[:, None]
        for key in ("history_x", "history_value", "history_mask", "tried"):
            o[key][rows] = 0
        o["history_fidelity"][rows] = -1
        o["budget_left"][rows] = 1
        self.t[rows], self.spent[rows], self.refusals[rows], self.best[rows] = 0, 0.0, 0, np.nan

    def scores(self, best: np.ndarray) -> dict[str, np.ndarray]:
        """`pregret`, `nregret` and `regret` of best target values (`Scorer`); NaN (no target run
        yet) scores as a failure does: pregret 1, the worst candidate's nregret and regret."""
        none = np.isnan(best)
        value = np.where(none, self.scorer.worst, best)
        return {"pregret": np.where(none, 1.0, self.scorer.pregret(value)),
                "nregret": self.scorer.nregret(value), "regret": self.scorer.regret(value)}

    def step(self, levels: np.ndarray, ids: np.ndarray, active: np.ndarray):
        """One query per active episode; returns reward, terminated, truncated and info arrays."""
        o, rows = self.obs, np.flatnonzero(active)
        before = self.scores(self.best)["pregret"]
        fits = rules.fits(self.costs[levels[rows]], self.cap - self.spent[rows]) \
            if self.budget.kind == "cost" else np.ones(len(rows), bool)
        valid = fits & (ids[rows] >= 0) & (ids[rows] < self.sizes[levels[rows]])
        refused = np.zeros(self.num, bool)
        refused[rows[~valid]] = True
        self.refusals[rows[~valid]] += 1
        run, lv, cid = rows[valid], levels[rows[valid]], ids[rows[valid]]
        self.refusals[run] = 0
        value = self.values[run, lv, cid]
        t = self.t[run]
        o["history_x"][run, t] = o["candidates"][run, lv, cid]
        o["history_fidelity"][run, t] = lv
        o["history_value"][run, t] = -self.sign * value
        o["history_mask"][run, t] = 1
        o["tried"][run, lv, cid] = 1
        self.t[run] += 1
        self.spent[run] += self.costs[lv]
        at_target = lv == len(self.fids) - 1
        hit = run[at_target]
        new = value[at_target]
        old = self.best[hit]
        self.best[hit] = np.where(np.isnan(old) | (self.sign * new < self.sign * old), new, old)
        if self.budget.kind == "trials":
            left = self.budget.amount - self.t
            done = ~rules.trial_left(left)
            o["budget_left"][:, 0] = left / self.budget.amount
        else:
            left = self.cap - self.spent
            done = ~rules.fits(self.costs.min(), left)
            o["budget_left"][:, 0] = np.clip(left / self.cap, 0, 1)
        done |= self.t >= self.horizon
        after = self.scores(self.best)
        truncated = (self.refusals >= rules.MAX_REFUSALS) & ~done
        info = {**after, "value": self.best.copy(), "refused": refused}
        return (before - after["pregret"]) * active, done & active, truncated & active, info


class ConfigEnv(gymnasium.Env):
    """One episode at a time (see the module docstring); `reset(seed=s)` is the harness's seed s."""

    metadata = {"render_modes": []}

    def __init__(self, episodes: EpisodeBatch):
        self.episodes = episodes
        self.observation_space = episodes.single_space()
        self.action_space = episodes.single_action_space()

    def _obs(self) -> dict:
        return {k: v[0].copy() for k, v in self.episodes.obs.items()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        self.episodes.reset([0], [episode_seed])
        return self._obs(), {"seed": episode_seed}

    def step(self, action):
        level, cid = _split_action(self.episodes, np.asarray(action)[None])
        reward, done, truncated, info = self.episodes.step(level, cid, np.ones(1, bool))
        return self._obs(), float(reward[0]), bool(done[0]), bool(truncated[0]), {
            k: v[0].item() for k, v in info.items()}


class VectorConfigEnv(VectorEnv):
    """`num_envs` episodes of one experiment in lockstep, numpy throughout; sub-environment i of
    `reset(seed=s)` is the harness's episode with seed s + i. Autoreset: next step. Observations
    are views of internal buffers (copy what you keep)."""

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, episodes: EpisodeBatch):
        self.episodes = episodes
        self.num_envs = episodes.num
        self.single_observation_space = episodes.single_space()
        self.single_action_space = episodes.single_action_space()
        batch = gymnasium.vector.utils.batch_space
        self.observation_space = batch(self.single_observation_space, self.num_envs)
        self.action_space = batch(self.single_action_space, self.num_envs)
        self._needs_reset = np.zeros(self.num_envs, bool)
        self._next_seed = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        base = seed if seed is not None else int(self.np_random.integers(2**31))
        self.episodes.reset(np.arange(self.num_envs), base + np.arange(self.num_envs))
        self._next_seed = base + self.num_envs
        self._needs_reset[:] = False
        return self.episodes.obs, {"seed": np.arange(base, base + self.num_envs)}

    def step(self, actions):
        restart = np.flatnonzero(self._needs_reset)
        if len(restart):  # autoreset: a finished episode restarts, ignoring its action
            self.episodes.reset(restart, self._next_seed + np.arange(len(restart)))
            self._next_seed += len(restart)
        level, cid = _split_action(self.episodes, np.asarray(actions))
        reward, done, truncated, info = self.episodes.step(level, cid, ~self._needs_reset)
        self._needs_reset = done | truncated
        return self.episodes.obs, reward, done, truncated, info


def _split_action(episodes: EpisodeBatch, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if episodes.budget.kind == "trials":
        return np.full(len(actions), len(episodes.fids) - 1), actions.astype(int).reshape(-1)
    actions = actions.astype(int).reshape(-1, 2)
    return actions[:, 0].clip(0, len(episodes.fids) - 1), actions[:, 1]


def _episodes(task: str | Task, experiment: str, suite: str, budget: float | None, num: int) -> EpisodeBatch:
    task = load_task(task) if isinstance(task, str) else task
    s = load_suite(suite)
    amount = max(s.budgets) if budget is None else budget
    return EpisodeBatch(task, experiment, Budget(s.budget, amount), s.prior_for(task.name), num)


def make_env(task: str | Task, experiment: str, suite: str = "paper",
             budget: float | None = None) -> ConfigEnv:
    """A Gymnasium environment for the episodes of one experiment under a suite's protocol
    (budget: the suite's largest unless given)."""
    return ConfigEnv(_episodes(task, experiment, suite, budget, 1))


def make_vector_env(task: str | Task, experiment: str, num_envs: int, suite: str = "paper",
                    budget: float | None = None) -> VectorConfigEnv:
    """`num_envs` such episodes stepped in lockstep (Gymnasium's vector API)."""
    return VectorConfigEnv(_episodes(task, experiment, suite, budget, num_envs))


__all__ = ["ConfigEnv", "EpisodeBatch", "VectorConfigEnv", "make_env", "make_vector_env"]
