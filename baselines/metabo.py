"""MetaBO (Volpp et al., ICLR 2020): a neural acquisition function meta-trained with PPO.

The acquisition function (AF) is a small MLP that scores every untried target candidate from
per-candidate features; a softmax over the pool is the policy. As in the paper, the features are
the posterior mean and standard deviation of a GP on the episode's target observations, the
candidate's unit-cube encoding, the step t/T and the budget T. For transfer from cheap runs, the
candidate also carries the predictions of prior models: per prior fidelity (the `levels` most
expensive ones holding at least `MIN_PRIOR_RUNS` runs), the posterior mean of a GP on that
fidelity's normal-scored prior values, z-scored over the pool, with per-episode scalars saying
whether the level exists and how far it is from the target (log10 of the cost ratio / 3). Two
levels let the AF learn a cheap-to-expensive trend; their GPs' length-scale, chosen by marginal
likelihood on a grid scaled by the pool's median pairwise distance, is reused for the target GP.

Values are oriented larger-is-better and normalised per fidelity within the episode (normal
scores of ranks), so nothing depends on the absolute values of an experiment. The GP is a small
exact numpy GP with fixed or grid-chosen hyperparameters; MetaBO learns only the AF.

Training (`meta_train`): PPO with the clipped objective, a value baseline and GAE, on batches of
episodes stepped in lockstep through `bench.gym.env.EpisodeBatch` over the fit experiments. Each
iteration draws `groups` (experiment, protocol, budget) triples as `TrainingData.episodes` does
and `envs` episode seeds for each; actions are sampled from the softmax over untried target
candidates. The reward is the per-step improvement of the normalised regret (the env's `info`,
from the experiment's `Scorer`), with the regret capped at `regret_cap` (diverged runs would
otherwise dominate the return); its sum is the drop from the worst candidate's capped nregret to
the final one. The features are computed by the
same functions at training and test time, from float32 arrays as the env holds them.

At test time the AF is greedy: the untried target candidate with the highest score.

The value baseline is an MLP on (t/T, T) and the prior scalars. Simplified for two CPU cores: MLPs
of 2 x 64 units (the paper: 4 x 200), about 100 PPO iterations of ~48 episodes (minutes, not hours),
and the GP's hyperparameters chosen on a grid rather than fitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.linalg import cho_factor, cho_solve, solve_triangular
from scipy.spatial.distance import pdist
from threadpoolctl import threadpool_limits
from torch import nn

from bench.gym.problem import Budget, Problem, Query
from bench.numerics import normal_scores_by_level, seeded_torch, torch_threads
from bench.optimizer import LearnedOptimizer
from bench.training import TrainingData

MIN_PRIOR_RUNS = 3  # a prior fidelity with fewer runs gets no prior model
LENGTHSCALE_GRID = (0.25, 0.5, 1.0, 2.0)  # times the pool's median pairwise distance
NOISE_GRID = (0.01, 0.1)  # on normal scores (unit variance)
TARGET_NOISE = 0.01
JITTER = 1e-8
GAP_SCALE = 3.0  # log10 cost ratio per unit of the gap feature
BUDGET_SCALE = 10.0  # T per unit of the budget feature


@dataclass(frozen=True)
class Settings:
    """MetaBO's parameters (the preset's `params`); every one has a default."""

    train_steps: int = 100  # PPO iterations
    groups: int = 6  # (experiment, protocol, budget) triples per iteration
    envs: int = 8  # episodes per triple, stepped in lockstep
    epochs: int = 4  # PPO epochs per iteration
    minibatch: int = 128  # decisions per gradient step
    lr: float = 1e-3
    clip: float = 0.2
    gamma: float = 0.98
    gae_lambda: float = 0.95
    entropy: float = 0.01
    value_coef: float = 0.5
    hidden: int = 64
    layers: int = 2
    levels: int = 2  # prior fidelities modelled
    prior_points: int = 256  # prior runs per level in a prior GP (the first ones in the episode's order)
    fit_points: int = 64  # of those, used to choose its hyperparameters
    regret_cap: float = 3.0
    threads: int = 1


# Numpy GP ----------------------------------------------------------------------------------------
def squared_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum((a**2).sum(1)[:, None] + (b**2).sum(1)[None, :] - 2.0 * a @ b.T, 0.0)


def rbf(d2: np.ndarray, lengthscale: float) -> np.ndarray:
    """Unit-variance RBF kernel from squared distances."""
    return np.exp(-0.5 * d2 / lengthscale**2)


def _factor(d2: np.ndarray, lengthscale: float, noise: float):
    return cho_factor(rbf(d2, lengthscale) + (noise + JITTER) * np.eye(len(d2)), lower=True)


def log_marginal_likelihood(d2: np.ndarray, y: np.ndarray, lengthscale: float, noise: float) -> float:
    """Of a zero-mean, unit-variance RBF GP with Gaussian noise (`d2`: squared distances of the inputs)."""
    factor = _factor(d2, lengthscale, noise)
    alpha = cho_solve(factor, y)
    return float(-0.5 * y @ alpha - np.log(np.diag(factor[0])).sum() - 0.5 * len(y) * np.log(2 * np.pi))


def gp_posterior(x: np.ndarray, y: np.ndarray, query: np.ndarray, lengthscale: float, noise: float,
                 with_std: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """Posterior mean and standard deviation (None unless `with_std`) at `query` of a zero-mean,
    unit-variance RBF GP."""
    factor = _factor(squared_distances(x, x), lengthscale, noise)
    cross = rbf(squared_distances(query, x), lengthscale)
    mean = cross @ cho_solve(factor, y)
    if not with_std:
        return mean, None
    v = solve_triangular(factor[0], cross.T, lower=True)
    return mean, np.sqrt(np.clip(1.0 - (v**2).sum(0), 1e-12, None))


def choose_hyperparameters(x: np.ndarray, y: np.ndarray, unit: float) -> tuple[float, float]:
    """(length-scale, noise) on the grid with the highest marginal likelihood."""
    d2 = squared_distances(x, x)
    grid = [(m * unit, s) for m in LENGTHSCALE_GRID for s in NOISE_GRID]
    scores = [log_marginal_likelihood(d2, y, ls, s) for ls, s in grid]
    return grid[int(np.argmax(scores))]


def normal_scores(values: np.ndarray) -> np.ndarray:
    return normal_scores_by_level(np.asarray(values, float), np.zeros(len(values), int))


def zscore(v: np.ndarray) -> np.ndarray:
    sd = v.std()
    return (v - v.mean()) / sd if sd > 1e-9 else np.zeros_like(v)


# Features ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EpisodeContext:
    """What stays fixed during an episode: the target pool and its prior-model features."""

    x: np.ndarray  # (N, d) target candidates
    prior: np.ndarray  # (N, levels) prior-model predictions, z-scored over the pool
    scalars: np.ndarray  # (2 levels,) per level: present (0/1), gap to the target
    lengthscale: float


def feature_width(d: int, levels: int) -> int:
    """Per candidate: mean, std, `levels` prior predictions, d encodings, t/T, T, 2 `levels` scalars."""
    return 2 + levels + d + 2 + 2 * levels


def value_width(levels: int) -> int:
    return 2 + 2 * levels


def episode_context(candidates: np.ndarray, prior_x: np.ndarray, prior_level: np.ndarray,
                    prior_value: np.ndarray, log_cost: np.ndarray, levels: int, prior_points: int,
                    fit_points: int) -> EpisodeContext:
    """Prior-model features of the target pool. `prior_value` is oriented larger-is-better;
    `log_cost` is log10 GPU-hours per fidelity, cheapest first (the last is the target)."""
    x = np.asarray(candidates, np.float64)
    unit = float(np.median(pdist(x))) if len(x) > 1 else 1.0
    unit = unit if unit > 1e-9 else 1.0
    counts = np.bincount(np.asarray(prior_level, int), minlength=len(log_cost))
    modelled = [lv for lv in range(len(log_cost) - 1)[::-1] if counts[lv] >= MIN_PRIOR_RUNS][:levels]
    prior, scalars, lengthscale = np.zeros((len(x), levels)), np.zeros(2 * levels), unit
    for k, lv in enumerate(modelled):
        rows = np.flatnonzero(prior_level == lv)[:prior_points]
        px, py = np.asarray(prior_x[rows], np.float64), normal_scores(prior_value[rows])
        ls, noise = choose_hyperparameters(px[:fit_points], py[:fit_points], unit)
        prior[:, k] = zscore(gp_posterior(px, py, x, ls, noise, with_std=False)[0])
        scalars[2 * k: 2 * k + 2] = 1.0, (log_cost[-1] - log_cost[lv]) / GAP_SCALE
        if k == 0:
            lengthscale = ls
    return EpisodeContext(x, prior, scalars, lengthscale)


def step_features(ctx: EpisodeContext, history_x: np.ndarray, history_value: np.ndarray, t: int,
                  budget: float) -> np.ndarray:
    """(N, feature_width) float32: the AF's input for every target candidate at step t of T."""
    if len(history_value):
        mean, std = gp_posterior(np.asarray(history_x, np.float64), normal_scores(history_value),
                                 ctx.x, ctx.lengthscale, TARGET_NOISE)
    else:
        mean, std = np.zeros(len(ctx.x)), np.ones(len(ctx.x))
    n = len(ctx.x)
    steps = np.tile([t / max(budget, 1.0), budget / BUDGET_SCALE], (n, 1))
    return np.hstack([mean[:, None], std[:, None], ctx.prior, ctx.x, steps,
                      np.tile(ctx.scalars, (n, 1))]).astype(np.float32)


def value_features(ctx: EpisodeContext, t: int, budget: float) -> np.ndarray:
    return np.concatenate([[t / max(budget, 1.0), budget / BUDGET_SCALE], ctx.scalars]).astype(np.float32)


# Networks ----------------------------------------------------------------------------------------
def mlp(width: int, hidden: int, layers: int) -> nn.Sequential:
    blocks: list[nn.Module] = []
    for i in range(layers):
        blocks += [nn.Linear(width if i == 0 else hidden, hidden), nn.ReLU()]
    return nn.Sequential(*blocks, nn.Linear(hidden, 1))


def build_networks(d: int, s: Settings) -> tuple[nn.Module, nn.Module]:
    """The AF (per-candidate score) and the value baseline."""
    return mlp(feature_width(d, s.levels), s.hidden, s.layers), mlp(value_width(s.levels), s.hidden, s.layers)


def masked_logits(policy: nn.Module, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(..., N) AF scores, -inf where the candidate may not be chosen."""
    return policy(features).squeeze(-1).masked_fill(~mask, -torch.inf)


# Training ----------------------------------------------------------------------------------------
@dataclass
class Batch:
    """Decisions of one iteration (padded to the widest pool)."""

    features: torch.Tensor  # (M, N, F)
    mask: torch.Tensor  # (M, N)
    actions: torch.Tensor  # (M,)
    log_probs: torch.Tensor  # (M,)
    value_in: torch.Tensor  # (M, V)
    advantages: torch.Tensor  # (M,)
    returns: torch.Tensor  # (M,)


def env_context(obs: dict, b: int, n: int, s: Settings) -> EpisodeContext:
    """The episode context of env row `b` (its target pool holds `n` candidates)."""
    keep = obs["prior_mask"][b].astype(bool)
    return episode_context(obs["candidates"][b, -1, :n], obs["prior_x"][b, keep],
                           obs["prior_fidelity"][b, keep].astype(int), obs["prior_value"][b, keep],
                           obs["descriptors"][b, :, -1], s.levels, s.prior_points, s.fit_points)


def gae(rewards: np.ndarray, values: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates over (T, B) steps; the episode ends after step T - 1."""
    adv, last = np.zeros_like(rewards), np.zeros(rewards.shape[1])
    for t in reversed(range(len(rewards))):
        following = values[t + 1] if t + 1 < len(rewards) else 0.0
        last = rewards[t] + gamma * following - values[t] + gamma * lam * last
        adv[t] = last
    return adv


def play_group(episodes, seeds: np.ndarray, policy: nn.Module, value: nn.Module, s: Settings,
               gen: torch.Generator) -> dict:
    """Roll out one lockstep group with sampled actions; the decisions and the final nregrets."""
    b_n, horizon, n = episodes.num, episodes.horizon, int(episodes.sizes[-1])
    episodes.reset(np.arange(b_n), seeds)
    obs = episodes.obs
    contexts = [env_context(obs, b, n, s) for b in range(b_n)]
    before = np.minimum(episodes.scores(np.full(b_n, np.nan))["nregret"], s.regret_cap)
    out = {k: [] for k in ("features", "mask", "actions", "log_probs", "value_in", "values", "rewards")}
    for t in range(horizon):
        feats = torch.from_numpy(np.stack([
            step_features(c, obs["history_x"][b, :t], obs["history_value"][b, :t], t, horizon)
            for b, c in enumerate(contexts)]))
        mask = torch.from_numpy(obs["tried"][:, -1, :n] == 0)
        v_in = torch.from_numpy(np.stack([value_features(c, t, horizon) for c in contexts]))
        with torch.no_grad():
            logits = masked_logits(policy, feats, mask)
            actions = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(-1)
            log_probs = torch.log_softmax(logits, -1).gather(-1, actions[:, None]).squeeze(-1)
            values = value(v_in).squeeze(-1)
        _, _, _, info = episodes.step(np.full(b_n, len(episodes.fids) - 1), actions.numpy(),
                                      np.ones(b_n, bool))
        after = np.minimum(info["nregret"], s.regret_cap)
        for k, v in zip(out, (feats, mask, actions, log_probs, v_in, values.numpy(), before - after),
                        strict=True):
            out[k].append(v)
        before = after
    rewards, values = np.array(out.pop("rewards")), np.array(out.pop("values"))
    adv = gae(rewards, values, s.gamma, s.gae_lambda)
    out = {k: torch.cat(v) for k, v in out.items()}  # step-major: row t * B + b
    out["advantages"] = torch.from_numpy(adv.reshape(-1)).float()
    out["returns"] = torch.from_numpy((adv + values).reshape(-1)).float()
    out["final"] = before
    return out


def merge(groups: list[dict]) -> Batch:
    width = max(g["mask"].shape[1] for g in groups)

    def pad(t: torch.Tensor, value) -> torch.Tensor:
        extra = width - t.shape[1]
        return t if not extra else torch.cat([t, torch.full((t.shape[0], extra, *t.shape[2:]), value,
                                                            dtype=t.dtype)], 1)

    return Batch(torch.cat([pad(g["features"], 0.0) for g in groups]),
                 torch.cat([pad(g["mask"], False) for g in groups]),
                 *(torch.cat([g[k] for g in groups]) for k in
                   ("actions", "log_probs", "value_in", "advantages", "returns")))


def ppo_update(batch: Batch, policy: nn.Module, value: nn.Module, optimizer: torch.optim.Optimizer,
               s: Settings, gen: torch.Generator) -> float:
    """`epochs` passes of clipped-objective minibatch steps; the mean loss."""
    adv = (batch.advantages - batch.advantages.mean()) / (batch.advantages.std() + 1e-8)
    losses = []
    for _ in range(s.epochs):
        order = torch.randperm(len(adv), generator=gen)
        for start in range(0, len(adv), s.minibatch):
            i = order[start: start + s.minibatch]
            log_p = torch.log_softmax(masked_logits(policy, batch.features[i], batch.mask[i]), -1)
            ratio = torch.exp(log_p.gather(-1, batch.actions[i, None]).squeeze(-1) - batch.log_probs[i])
            surrogate = torch.min(ratio * adv[i], ratio.clamp(1 - s.clip, 1 + s.clip) * adv[i]).mean()
            probs = log_p.exp()
            entropy = -(probs * log_p.masked_fill(~batch.mask[i], 0.0)).sum(-1).mean()
            value_loss = (value(batch.value_in[i]).squeeze(-1) - batch.returns[i]).pow(2).mean()
            loss = -surrogate + s.value_coef * value_loss - s.entropy * entropy
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(float(loss.detach()))
    return float(np.mean(losses))


def train_ppo(data: TrainingData, seed: int, progress: Callable[[float], None], s: Settings) -> dict:
    from bench.gym.env import EpisodeBatch

    rng, gen = np.random.default_rng(seed), torch.Generator().manual_seed(seed)
    with seeded_torch(seed):
        policy, value = build_networks(data.task.encoder.width, s)
    optimizer = torch.optim.Adam([*policy.parameters(), *value.parameters()], lr=s.lr)
    cache: dict = {}
    finals, losses = [], []
    for step in range(s.train_steps):
        groups = []
        for _ in range(s.groups):
            exp, prior, horizon = data.draw(rng)
            key = (exp, prior, horizon)
            if key not in cache:
                cache[key] = EpisodeBatch(data.task, exp, Budget("trials", horizon), prior, s.envs)
            groups.append(play_group(cache[key], rng.integers(2**31, size=s.envs), policy, value, s, gen))
        finals.append(float(np.mean([g["final"] for g in groups])))
        losses.append(ppo_update(merge(groups), policy, value, optimizer, s, gen))
        progress((step + 1) / max(s.train_steps, 1))
    return {"policy": dict(policy.state_dict()), "value": dict(value.state_dict()),
            "width": data.task.encoder.width, "final_nregret": finals, "loss": losses}


# The optimizer -----------------------------------------------------------------------------------
class MetaBO(LearnedOptimizer):
    """Greedy over untried target candidates by the meta-trained neural AF."""

    VERSION = 1

    @classmethod
    def meta_train(cls, data: TrainingData, seed: int, progress: Callable[[float], None], **params) -> dict:
        s = Settings(**params)
        with torch_threads(s.threads), threadpool_limits(s.threads):
            state = train_ppo(data, seed, progress, s)
        state["settings"] = asdict(s)
        return state

    def __init__(self, problem: Problem, seed: int, *, checkpoint, **params):
        super().__init__(problem, seed, checkpoint=checkpoint)
        self.settings = s = Settings(**params)
        self.policy, _ = build_networks(problem.encoder.width, s)
        self.policy.load_state_dict(checkpoint.state["policy"])
        self.policy.eval()
        prior_x, prior_level, prior_value = problem.prior_arrays
        self.x32 = problem.arrays().x.astype(np.float32)
        with threadpool_limits(s.threads):
            self.context = episode_context(
                self.x32, prior_x.astype(np.float32), prior_level,
                (-problem.objective.sign * prior_value).astype(np.float32),
                problem.descriptor_matrix()[:, -1], s.levels, s.prior_points, s.fit_points)

    def _target_history(self) -> tuple[np.ndarray, np.ndarray]:
        seen = [o for _, o in self.history if o.fidelity == self.problem.target]
        x = np.array([self.x32[o.candidate] if o.candidate is not None else
                      self.problem.encoder.one(o.config).astype(np.float32) for o in seen], np.float32)
        values = np.array([-self.problem.objective.sign * o.value for o in seen], np.float32)
        return x.reshape(len(seen), self.x32.shape[1]), values

    def scores(self) -> np.ndarray:
        """The AF's score of every target candidate at this step."""
        x, values = self._target_history()
        with torch_threads(self.settings.threads), threadpool_limits(self.settings.threads), torch.no_grad():
            feats = step_features(self.context, x, values, len(values), self.problem.budget.amount)
            return self.policy(torch.from_numpy(feats)).squeeze(-1).numpy()

    def ask(self) -> Query:
        ids = self.pool_ids()
        scores = self.scores()
        return self.query_candidate(int(ids[int(np.argmax(scores[ids]))]))
