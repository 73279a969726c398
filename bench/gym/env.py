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
  prior_diverged (P,)     1 where a cheap run diverged (its value is then the task's penalty)
  history_x (H, d), history_fidelity (H,), history_value (H,), history_mask (H,)   the episode
  history_diverged (H,)   1 where a run of the episode diverged
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
Observations are not copied: arrays an env returns may be shared or updated in place by later
steps (`ConfigEnv`, `VectorConfigEnv`): copy what you keep.

Train only on `train` experiments: the reward is computed from the target outcomes.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import gymnasium
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv

from bench.gym import rules
from bench.gym.problem import Budget, descriptor_matrix
from bench.gym.registry import load_task
from bench.gym.suites import load_suite
from bench.gym.task import Prior, Task

FIXED = ("candidates", "candidate_mask", "prior_x", "prior_fidelity", "prior_value", "prior_mask",
         "prior_diverged")
"""The observation arrays (besides `descriptors`) that only a reset changes."""


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
        self.flags = [None if lv is None else task.diverged(experiment, f.name).astype(np.int8)
                      for f, lv in zip(self.fids, self.levels, strict=True)]
        self.sizes = np.array([0 if lv is None else len(lv[0]) for lv in self.levels])
        width = task.encoder.width
        n, f = int(self.sizes.max()), len(self.fids)
        prior_size = int(self.sizes[: len(self.prior_levels)].sum())
        self.prior_x = np.concatenate([self.x32[i] for i in range(len(self.prior_levels))] or
                                      [np.zeros((0, task.encoder.width), np.float32)])
        self.prior_value = np.concatenate([-self.sign * self.levels[i][1]
                                           for i in range(len(self.prior_levels))] or [np.zeros(0)])
        self.prior_value = self.prior_value.astype(np.float32)
        self.prior_diverged = np.concatenate([self.flags[i] for i in range(len(self.prior_levels))] or
                                             [np.zeros(0, np.int8)])
        self.prior_offsets = np.cumsum([0, *self.sizes[: len(self.prior_levels)]])[:-1]  # in prior_x
        self.cap = budget.amount * (self.costs[-1] if budget.kind == "cost" else 1.0)
        self.horizon = rules.horizon(budget, self.costs)
        self.scorer = task.scorer(experiment)  # every score of the target pool (`bench.scores`)
        self.descriptors = descriptor_matrix(self.fids)
        self.num, self.shape = num, (f, n, width, max(prior_size, 1), max(self.horizon, 1))
        _, _, _, p, h = self.shape
        self.values = np.zeros((num, f, n))  # outcomes in each episode's candidate order
        self.diverged = np.zeros((num, f, n), np.int8)  # and whether they diverged
        self.obs = {"descriptors": np.broadcast_to(self.descriptors, (num, *self.descriptors.shape)),
                    **self.blank(num)}
        self.t = np.zeros(num, int)
        self.spent = np.zeros(num)
        self.refusals = np.zeros(num, int)
        self.best = np.full(num, np.nan)

    def blank(self, num: int) -> dict[str, np.ndarray]:
        """The observation arrays (all but `descriptors`) of `num` episodes before any reset."""
        f, n, width, p, h = self.shape
        return {
            "candidates": np.zeros((num, f, n, width), np.float32),
            "candidate_mask": np.zeros((num, f, n), np.int8),
            "prior_x": np.zeros((num, p, width), np.float32),
            "prior_fidelity": np.full((num, p), -1.0, np.float32),
            "prior_value": np.zeros((num, p), np.float32),
            "prior_mask": np.zeros((num, p), np.int8),
            "prior_diverged": np.zeros((num, p), np.int8),
            "history_x": np.zeros((num, h, width), np.float32),
            "history_fidelity": np.full((num, h), -1.0, np.float32),
            "history_value": np.zeros((num, h), np.float32),
            "history_mask": np.zeros((num, h), np.int8),
            "history_diverged": np.zeros((num, h), np.int8),
            "tried": np.zeros((num, f, n), np.int8),
            "budget_left": np.ones((num, 1), np.float32),
        }

    def single_space(self) -> spaces.Dict:
        f, n, width, p, h = self.shape
        box = lambda shape, lo=-np.inf, hi=np.inf: spaces.Box(lo, hi, shape, np.float32)  # noqa: E731
        return spaces.Dict({
            "descriptors": box(self.descriptors.shape), "candidates": box((f, n, width)),
            "candidate_mask": spaces.MultiBinary((f, n)), "prior_x": box((p, width)),
            "prior_fidelity": box((p,), -1, f - 1), "prior_value": box((p,)),
            "prior_mask": spaces.MultiBinary(p), "prior_diverged": spaces.MultiBinary(p),
            "history_x": box((h, width)), "history_diverged": spaces.MultiBinary(h),
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
        rows = np.asarray(rows, int)
        if len(rows) and np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):
            rows = slice(int(rows[0]), int(rows[0]) + len(rows))  # a block: much faster writes
        o = self.obs
        self.deal(o, self.values, self.diverged, rows, seeds)
        for key in ("history_x", "history_value", "history_mask", "history_diverged", "tried"):
            o[key][rows] = 0
        o["history_fidelity"][rows] = -1
        o["budget_left"][rows] = 1
        self.t[rows], self.spent[rows], self.refusals[rows], self.best[rows] = 0, 0.0, 0, np.nan

    def deal(self, obs: dict, values: np.ndarray, diverged: np.ndarray, rows, seeds) -> None:
        """Write what the episodes with `seeds` are dealt into rows `rows` of `obs` (its `FIXED`
        arrays), of `values` (the outcomes in each episode's candidate order) and of `diverged`
        (their divergence flags)."""
        seeds = np.asarray(seeds, np.int64)
        n_max, p_max = self.shape[1], self.shape[3]
        for level, (fid, arrays) in enumerate(zip(self.fids, self.levels, strict=True)):
            if arrays is None:  # withheld: stays masked and zero
                continue
            order = self.task.permutations(self.experiment, fid.name, seeds)
            n = order.shape[1]
            obs["candidates"][rows, level, :n] = np.take(self.x32[level], order, axis=0)
            obs["candidate_mask"][rows, level] = np.arange(n_max) < n
            values[rows, level, :n] = arrays[1][order]
            diverged[rows, level, :n] = self.flags[level][order]
        levels, prior_rows, counts = self.task.prior_rows(self.experiment, self.prior, seeds)
        valid = np.arange(levels.shape[1])[None, :] < counts[:, None]
        if len(self.prior_levels):  # one flat table of the prior fidelities' runs
            flat = self.prior_offsets[levels] + prior_rows
            width = levels.shape[1]
            obs["prior_x"][rows, :width] = np.take(self.prior_x, flat, axis=0)
            obs["prior_value"][rows, :width] = self.prior_value[flat]
            obs["prior_diverged"][rows, :width] = self.prior_diverged[flat]
            if not valid.all():  # a prior budget cut: clear the padding
                obs["prior_x"][rows, :width] *= valid[..., None]
                obs["prior_value"][rows, :width] *= valid
                obs["prior_diverged"][rows, :width] *= valid
        fidelity = np.full((len(seeds), p_max), -1.0, np.float32)
        fidelity[:, : levels.shape[1]] = np.where(valid, levels, -1)
        obs["prior_fidelity"][rows] = fidelity
        obs["prior_mask"][rows] = np.arange(p_max)[None, :] < counts[:, None]

    def layout(self, seed: int) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
        """What the episode with `seed` is dealt (`deal`), for one episode: its `FIXED`
        observation arrays, its outcomes (F, N) in candidate order and their divergence flags,
        all read-only."""
        obs, values = self.blank(1), np.zeros((1, *self.values.shape[1:]))
        diverged = np.zeros(values.shape, np.int8)
        self.deal(obs, values, diverged, slice(0, 1), [seed])
        return {k: _read_only(obs[k][0]) for k in FIXED}, _read_only(values[0]), _read_only(diverged[0])

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
        o["history_diverged"][run, t] = self.diverged[run, lv, cid]
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
    """One episode at a time (see the module docstring); `reset(seed=s)` is the harness's seed s.

    Stepped in plain Python on one episode's arrays: the same episodes, rewards and scores as
    `EpisodeBatch` (and so `VectorConfigEnv`), without batch overhead. What a seed deals
    (`EpisodeBatch.layout`: shuffled candidates and prior, outcomes) is kept for the last
    `cache_size` seeds reset with (an LRU), so that a reset with one of them costs (almost)
    nothing. Observations are not copied: `descriptors`, `candidates`, `candidate_mask` and
    `prior_*` are read-only arrays shared with that cache; `history_*`, `tried` and
    `budget_left` are the episode's own arrays (new at each reset), which its later steps
    update in place. Copy what you keep."""

    metadata = {"render_modes": []}

    def __init__(self, episodes: EpisodeBatch, cache_size: int = 256):
        self.episodes = episodes
        self.observation_space = episodes.single_space()
        self.action_space = episodes.single_action_space()
        self.cache_size = cache_size
        self._layouts: OrderedDict[int, tuple[dict, np.ndarray]] = OrderedDict()
        blank = episodes.blank(1)
        self._blank = {k: v[0] for k, v in blank.items() if k not in FIXED}
        self._descriptors = _read_only(episodes.descriptors)
        self._trials = episodes.budget.kind == "trials"
        self._target = len(episodes.fids) - 1
        self._sizes, self._costs = episodes.sizes.tolist(), episodes.costs.tolist()
        self._cap, self._cheapest = float(episodes.cap), min(self._costs)
        self._amount, self._horizon = episodes.budget.amount, episodes.horizon
        self._sign = float(episodes.sign)
        self._scorer = episodes.scorer
        worst = episodes.scores(np.full(1, np.nan))  # no target run yet: the failure's scores
        self._failure = tuple(worst[k].item() for k in ("pregret", "nregret", "regret"))
        self._obs: dict = {}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        episode_seed = seed if seed is not None else int(self.np_random.integers(2**31))
        fixed, self._values, self._diverged = self._layout(episode_seed)
        self._obs = {"descriptors": self._descriptors, **fixed,
                     **{k: v.copy() for k, v in self._blank.items()}}
        self._t, self._spent, self._refusals, self._best = 0, 0.0, 0, np.nan
        self._score = self._failure
        return dict(self._obs), {"seed": episode_seed}

    def _layout(self, seed: int) -> tuple[dict, np.ndarray, np.ndarray]:
        """`EpisodeBatch.layout(seed)`, through the LRU of the last `cache_size` seeds."""
        cached = self._layouts.get(seed)
        if cached is not None:
            self._layouts.move_to_end(seed)
            return cached
        cached = self._layouts[seed] = self.episodes.layout(seed)
        while len(self._layouts) > self.cache_size:
            self._layouts.popitem(last=False)
        return cached

    def step(self, action):
        """`EpisodeBatch.step` for one episode (the same rules, in the same order)."""
        level, cid = self._action(action)
        o, t = self._obs, self._t
        before = self._score[0]
        valid = 0 <= cid < self._sizes[level] and (
            self._trials or rules.fits(self._costs[level], self._cap - self._spent))
        if valid:
            self._refusals = 0
            value = self._values.item(level, cid)
            o["history_x"][t] = o["candidates"][level, cid]
            o["history_fidelity"][t] = level
            o["history_value"][t] = -self._sign * value
            o["history_mask"][t] = 1
            o["history_diverged"][t] = self._diverged.item(level, cid)
            o["tried"][level, cid] = 1
            self._t = t = t + 1
            self._spent += self._costs[level]
            best = self._best
            if level == self._target and (math.isnan(best) or self._sign * value < self._sign * best):
                self._best, self._score = value, self._scorer.point(value)
        else:
            self._refusals += 1
        if self._trials:
            left = self._amount - t
            done = not rules.trial_left(left)
            o["budget_left"][0] = left / self._amount
        else:
            left = self._cap - self._spent
            done = not rules.fits(self._cheapest, left)
            o["budget_left"][0] = min(max(left / self._cap, 0), 1)
        done = done or t >= self._horizon
        truncated = self._refusals >= rules.MAX_REFUSALS and not done
        pregret, nregret, regret = self._score
        return dict(o), before - pregret, done, truncated, {
            "pregret": pregret, "nregret": nregret, "regret": regret, "value": self._best,
            "refused": not valid}

    def _action(self, action) -> tuple[int, int]:
        """(fidelity level, candidate id) of an action, as `_split_action` reads it."""
        if self._trials:
            if isinstance(action, (int, np.integer)):
                return self._target, int(action)
        elif isinstance(action, np.ndarray) and action.shape == (2,) and action.dtype.kind == "i":
            level, cid = action.tolist()  # a `MultiDiscrete` sample
            return min(max(level, 0), self._target), cid
        level, cid = _split_action(self.episodes, np.asarray(action)[None])
        return int(level[0]), int(cid[0])


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


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


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
