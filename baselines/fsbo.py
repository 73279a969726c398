"""FSBO (Wistuba & Grabocka, "Few-Shot Bayesian Optimization with Deep Kernel Surrogates", ICLR 2021).

Surrogate: a deep-kernel GP. Its inputs u are

    [unit-cube x | fidelity descriptors, standardised over the task | the same minus the target's]

(the descriptors are `Problem.descriptor_matrix()`: log10 descriptors and log10 GPU-hours), the
feature extractor is phi(u) = u + MLP(u) (ReLU hidden layers, output layer initialised at zero) and
the kernel k(a, b) = s^2 k_base(phi(a), phi(b)) + v t_a t_b, with k_base an ARD RBF (or
Matern-5/2), t = 1 for target-fidelity rows and 0 otherwise, a zero mean and Gaussian noise. One
surrogate models the cheap and the target runs; v is the variance of the target values' unknown
level (see Values). The paper's phi is a plain MLP; the residual form starts from an ARD kernel on
u, which transfers better across these few train experiments (5-10 per task): on data_mixture's
validation experiments the rank correlation of the prior-conditioned target mean with the truth
was 0.2 with a plain MLP (trained or not) and 0.65 with the ARD kernel.

Values: oriented to be maximised (-sign * value) and replaced per fidelity by normal scores (ranks
through the normal quantile, `baselines.botorch_gp.models.normal_scores_by_level`) where the paper
standardises each dataset: the same scale for every dataset, and pretrain_hparams' diverged runs
bounded. The few target observations of an episode are scored among themselves, so their level
carries no information; the v t t' term absorbs it.

Meta-training (paper: Adam on the GP's negative marginal likelihood, each step a random subset of
one dataset's rows). Every (experiment, fidelity) table of the fit experiments is a dataset. A step
draws one experiment, a target fidelity (its own or, with probability `pseudo_target_share`, a
cheaper one: more tasks from few experiments), the prior a test protocol would give
(`TrainingData.priors`: gap, budget: a random subset of rows), capped and scored as in an episode,
and 1..`target_rows` random target rows scored among themselves. A batch thus joins an experiment's
fidelity tables (the paper's holds one dataset), so the likelihood also fits how cheap runs covary
with target runs. Phase 1 (`kernel_steps`) fits the kernel and noise with phi = identity; phase 2
(`train_steps`) every parameter. The number of phase-2 steps is chosen on held-out fit experiments
(`holdout_share`; the test protocols' priors at their own target): a first run on the others scores
the rank correlation of the prior-conditioned target mean with the true target values after phase
1 and every `eval_every` steps (stopping after `patience` scores without a gain), then both phases
run on every fit experiment for the best count (0: the meta-trained ARD kernel). With one fit
experiment (grpo) nothing is held out and phase 2 runs in full. Task augmentation (random rescaling
of values) is not used: scores per fidelity give every dataset the same scale.

Episode: condition on the prior (at most `max_prior` runs, the most expensive fidelities first) and
the target observations, fine-tune the kernel and noise for `finetune_steps` Adam steps on them
from the checkpoint (`finetune="all"` also phi, as the paper; on the validation experiments that
was worse), then ask the untried target candidate with the highest log-EI at the target fidelity,
the best target score as incumbent. With no target observation it asks the best posterior mean
(the prior's pick): this replaces the paper's evolutionary warm start. No prior and no observation:
a uniform draw. Every query is at the target fidelity, also on cost budgets.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import gpytorch
import numpy as np
import torch
from gpytorch.constraints import GreaterThan
from gpytorch.mlls import ExactMarginalLogLikelihood
from scipy.stats import spearmanr

from bench.gym.problem import Budget, Problem, Query
from bench.numerics import normal_scores_by_level, seeded_torch, torch_threads
from bench.optimizer import LearnedOptimizer

DTYPE = torch.float64
LOSS_POINTS = 20  # the training-loss curve kept in the checkpoint: means over this many spans


@contextlib.contextmanager
def computing(threads: int):
    """Where FSBO computes: `threads` torch threads and gpytorch's settings fixed at the values
    importing BoTorch sets for the whole process (exact solves, Cholesky up to 4,096 points). Left
    to the process, they were gpytorch's own (fast approximations, Cholesky up to 800) until a
    BoTorch method had been imported in the same worker: FSBO's checkpoints and asks depended on
    what else the process had run."""
    with torch_threads(threads), gpytorch.settings.fast_computations(False, False, False), \
            gpytorch.settings.max_cholesky_size(4096), gpytorch.settings.cholesky_max_tries(6), \
            gpytorch.settings.max_eager_kernel_size(4096):
        yield


@dataclass(frozen=True)
class Settings:
    """Every parameter of the preset, with its default (passed to `meta_train` and `__init__`)."""

    hidden: int = 32  # units per hidden layer of phi's MLP
    depth: int = 2  # hidden layers of phi's MLP (0: phi is the identity, a plain ARD kernel)
    kernel: str = "rbf"  # or "matern" (5/2), on phi's output
    kernel_steps: int = 200  # meta-training, phase 1: kernel and noise only (phi(u) = u)
    kernel_lr: float = 1e-2
    train_steps: int = 1500  # phase 2: every parameter
    lr: float = 3e-3  # Adam, phase 2
    eval_every: int = 150  # phase-2 steps between scores on the held-out fit experiments
    holdout_share: float = 0.25  # of the fit experiments (at least 1 when >= 2), to choose the steps
    holdout_draws: int = 2  # held-out episodes per experiment and protocol
    patience: int = 4  # held-out scores without a gain that end the choosing run
    max_prior: int = 300  # prior runs a GP conditions on (most expensive fidelities first)
    target_rows: int = 16  # at most this many target rows per training batch
    pseudo_target_share: float = 0.5  # batches whose target is a cheaper fidelity
    finetune_steps: int = 10  # Adam steps per ask, from the checkpoint
    finetune: str = "kernel"  # what they change: "kernel" (kernel and noise) or "all" (phi too)
    finetune_lr: float = 1e-2
    threads: int = 1


# Inputs and scores -------------------------------------------------------------------------------
def gp_inputs(x: np.ndarray, levels: np.ndarray, descriptors: np.ndarray, target: int,
              centre: np.ndarray, scale: np.ndarray) -> torch.Tensor:
    """Rows [x | standardised descriptors | descriptors minus the target's | is-target]."""
    d = (descriptors - centre) / scale
    relative = d - d[target]
    flag = (levels == target).astype(float)[:, None]
    return torch.as_tensor(np.hstack([x, d[levels], relative[levels], flag]), dtype=DTYPE)


def descriptor_scaling(matrices: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation (1 where constant) of the descriptor columns over fidelities."""
    rows = np.unique(np.vstack(matrices).astype(float), axis=0)
    std = rows.std(axis=0)
    return rows.mean(axis=0), np.where(std > 1e-6, std, 1.0)


def cap_prior(levels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """At most `n` row indices, the most expensive level first; a random subset of the level cut."""
    keep: list[np.ndarray] = []
    room = n
    for level in sorted(np.unique(levels), reverse=True):
        if room <= 0:
            break
        rows = np.flatnonzero(levels == level)
        if len(rows) > room:
            rows = np.sort(rng.choice(rows, size=room, replace=False))
        keep.append(rows)
        room -= len(rows)
    return np.concatenate(keep) if keep else np.zeros(0, dtype=int)


def log_expected_improvement(mean: torch.Tensor, sd: torch.Tensor, best: float) -> torch.Tensor:
    """log E[max(f - best, 0)] for f ~ N(mean, sd^2), stable far below the incumbent.

    EI = sd h(z), h(z) = phi(z) + z Phi(z); for z < -1, h(z) = phi(z) (1 + z sqrt(pi/2) erfcx(-z/sqrt2))."""
    z = (mean - best) / sd
    high = z.clamp_min(-1.0)
    normal = torch.distributions.Normal(torch.zeros((), dtype=z.dtype), torch.ones((), dtype=z.dtype))
    log_h_high = torch.log(normal.log_prob(high).exp() + high * normal.cdf(high))
    low = z.clamp_max(-1.0)
    ratio = low * math.sqrt(math.pi / 2) * torch.special.erfcx(-low / math.sqrt(2))
    log_h_low = normal.log_prob(low) + torch.log1p(ratio.clamp_min(-1 + 1e-15))
    return torch.log(sd) + torch.where(z >= -1.0, log_h_high, log_h_low)


# The surrogate -----------------------------------------------------------------------------------
class FeatureExtractor(torch.nn.Module):
    """phi(u) = u + MLP(u) (ReLU hidden layers; the output layer starts at zero, so the kernel
    starts as an ARD kernel on the inputs and meta-training bends it only where that helps)."""

    def __init__(self, width: int, hidden: int, depth: int):
        super().__init__()
        layers: list[torch.nn.Module] = []
        inner = width
        for _ in range(depth):
            layers += [torch.nn.Linear(inner, hidden), torch.nn.ReLU()]
            inner = hidden
        if depth:
            out = torch.nn.Linear(inner, width)
            torch.nn.init.zeros_(out.weight)
            torch.nn.init.zeros_(out.bias)
            layers.append(out)
        self.mlp = torch.nn.Sequential(*layers) if depth else None

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u if self.mlp is None else u + self.mlp(u)


class DeepKernelGP(gpytorch.models.ExactGP):
    """Exact GP with k = s^2 k_base(phi(a), phi(b)) + v t_a t_b (t: the last input column)."""

    def __init__(self, n_inputs: int, settings: Settings):
        likelihood = gpytorch.likelihoods.GaussianLikelihood(noise_constraint=GreaterThan(1e-4))
        super().__init__(None, None, likelihood)
        width = self.phi_width = n_inputs - 1
        self.phi = FeatureExtractor(width, settings.hidden, settings.depth)
        if settings.kernel == "rbf":
            base = gpytorch.kernels.RBFKernel(ard_num_dims=width)
        elif settings.kernel == "matern":
            base = gpytorch.kernels.MaternKernel(nu=2.5, ard_num_dims=width)
        else:
            raise ValueError(f"kernel must be 'rbf' or 'matern' (got {settings.kernel!r})")
        self.covar = gpytorch.kernels.ScaleKernel(base)
        self.offset = gpytorch.kernels.LinearKernel()
        self.mean = gpytorch.means.ZeroMean()

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        z = self.phi(x[..., :-1])
        covar = self.covar(z) + self.offset(x[..., -1:])
        return gpytorch.distributions.MultivariateNormal(self.mean(z), covar)


def adam_steps(model: DeepKernelGP, batches: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
               steps: int, lr: float, on_step: Callable[[int, float], bool] | None = None,
               kernel_only: bool = False) -> None:
    """Minimise the negative marginal likelihood (per point) over `steps` batches (fewer once
    `on_step` returns True); `kernel_only`: phi stays as it is."""
    model.train()
    params = [p for name, p in model.named_parameters() if not (kernel_only and name.startswith("phi."))]
    optimizer = torch.optim.Adam(params, lr=lr)
    mll = ExactMarginalLogLikelihood(model.likelihood, model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
        for step in range(steps):
            x, y = batches(step)
            model.set_train_data(x, y, strict=False)
            optimizer.zero_grad()
            loss = -mll(model(x), y)
            loss.backward()
            optimizer.step()
            if on_step is not None and on_step(step, float(loss.detach())):
                break


def posterior_mean(model: DeepKernelGP, x: torch.Tensor, y: torch.Tensor,
                   query: torch.Tensor) -> torch.Tensor:
    """The mean at `query` of `model` conditioned on (x, y); the model is left in eval mode."""
    model.set_train_data(x, y, strict=False)
    model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
        return model(query).mean


# Meta-training data ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExperimentTables:
    """One fit experiment: per fidelity (cheapest first) the encodings and values to maximise."""

    x: list[np.ndarray]
    y: list[np.ndarray]
    cost: np.ndarray
    descriptors: np.ndarray  # as `Problem.descriptor_matrix()`


def experiment_tables(data, experiment: str) -> ExperimentTables:
    task = data.task
    fidelities = task.experiment(experiment).fidelities
    arrays = [task.arrays(experiment, f.name) for f in fidelities]
    descriptors = task.problem(experiment, Budget("trials", 1), "cheaper", 0).descriptor_matrix()
    return ExperimentTables([pool.x for pool, _ in arrays], [-task.objective.sign * v for _, v in arrays],
                            np.array([f.cost for f in fidelities]), descriptors.astype(float))


def protocol_prior(tables: ExperimentTables, target: int, prior, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(level, row) pairs of the prior a protocol gives when `target` is the target fidelity, by
    the protocol's rules (`Prior.levels`, `Prior.runs`, as `Task.prior_rows`): every run of the
    cheaper fidelities within its gap (all cheaper ones if none is), in a random order cut where
    its budget of target runs is spent."""
    levels = prior.levels(tables.cost[:target], tables.cost[target])
    if not len(levels) and prior.kind == "cheaper":
        levels = np.arange(target)
    if not len(levels):
        return np.zeros(0, int), np.zeros(0, int)
    level = np.concatenate([np.full(len(tables.y[lv]), lv) for lv in levels])
    row = np.concatenate([np.arange(len(tables.y[lv])) for lv in levels])
    if prior.budget is not None:
        order = rng.permutation(len(level))
        level, row = level[order], row[order]
        n = int(prior.runs(tables.cost[level], tables.cost[target]))
        level, row = level[:n], row[:n]
    return level, row


def scored_prior(tables: ExperimentTables, target: int, prior, max_prior: int, rng: np.random.Generator
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A protocol's prior as an episode sees it: encodings, levels and per-level scores (scored on
    every prior run, then capped at `max_prior`, most expensive fidelities first)."""
    level, row = protocol_prior(tables, target, prior, rng)
    y = np.array([tables.y[lv][r] for lv, r in zip(level, row, strict=True)])
    scores = normal_scores_by_level(y, level) if len(y) else y
    keep = cap_prior(level, max_prior, rng)
    x = np.array([tables.x[lv][r] for lv, r in zip(level[keep], row[keep], strict=True)])
    return x.reshape(len(keep), tables.x[0].shape[1]), level[keep], scores[keep]


def training_batch(tables: ExperimentTables, priors, settings: Settings, centre: np.ndarray,
                   scale: np.ndarray, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """One episode-like batch: a (pseudo-)target's prior, capped and scored as in an episode, and
    random target rows scored among themselves."""
    last = len(tables.y) - 1
    target = last
    if last > 1 and rng.random() < settings.pseudo_target_share:
        target = int(rng.integers(1, last))
    prior = priors[int(rng.integers(len(priors)))]
    x_prior, level, scores = scored_prior(tables, target, prior, settings.max_prior, rng)
    pool = len(tables.y[target])
    n_target = int(rng.integers(1, max(2, min(settings.target_rows, pool - 1) + 1)))
    picked = rng.choice(pool, size=min(n_target, pool), replace=False)
    x = np.vstack([tables.x[target][picked], x_prior])
    levels = np.concatenate([np.full(len(picked), target), level])
    target_scores = normal_scores_by_level(tables.y[target][picked], np.zeros(len(picked), int))
    return (gp_inputs(x, levels, tables.descriptors, target, centre, scale),
            torch.as_tensor(np.concatenate([target_scores, scores]), dtype=DTYPE))


@dataclass(frozen=True)
class HeldOutEpisode:
    """A held-out experiment's prior (GP inputs, scores) and its target pool with true values."""

    x: torch.Tensor
    y: torch.Tensor
    query: torch.Tensor
    truth: np.ndarray


def held_out_episodes(tables: list[ExperimentTables], priors, settings: Settings, centre: np.ndarray,
                      scale: np.ndarray, rng: np.random.Generator) -> list[HeldOutEpisode]:
    """`holdout_draws` priors per experiment and protocol, at the experiment's own target."""
    episodes = []
    for t in tables:
        target = len(t.y) - 1
        levels = np.full(len(t.y[target]), target)
        query = gp_inputs(t.x[target], levels, t.descriptors, target, centre, scale)
        for prior in priors:
            for _ in range(settings.holdout_draws):
                x, level, scores = scored_prior(t, target, prior, settings.max_prior, rng)
                if len(level):
                    inputs = gp_inputs(x, level, t.descriptors, target, centre, scale)
                    episodes.append(HeldOutEpisode(inputs, torch.as_tensor(scores, dtype=DTYPE), query,
                                                   t.y[target]))
    return episodes


def holdout_score(model: DeepKernelGP, episodes: list[HeldOutEpisode]) -> float:
    """Mean Spearman correlation of the prior-conditioned target mean with the true target values."""
    rhos = []
    for e in episodes:
        mean = posterior_mean(model, e.x, e.y, e.query).numpy()
        rho = spearmanr(mean, e.truth)[0] if np.ptp(mean) > 0 else 0.0
        rhos.append(0.0 if np.isnan(rho) else float(rho))
    model.train()
    return float(np.mean(rhos)) if rhos else 0.0


def meta_fit(tables: list[ExperimentTables], priors, settings: Settings, centre: np.ndarray,
             scale: np.ndarray, seed: int, deep_steps: int, on_step: Callable[[], None],
             episodes: list[HeldOutEpisode] = ()) -> tuple[DeepKernelGP, list[float], list[float]]:
    """Both phases of meta-training; returns the model, its losses and, with held-out `episodes`,
    their score after phase 1 and after every `eval_every` phase-2 steps."""
    rng = np.random.default_rng(seed)
    width = tables[0].x[0].shape[1] + 2 * tables[0].descriptors.shape[1] + 1
    with seeded_torch(seed):
        model = DeepKernelGP(width, settings).to(DTYPE)
    losses: list[float] = []
    scores: list[float] = []

    def batch(_: int):
        return training_batch(tables[int(rng.integers(len(tables)))], priors, settings, centre, scale, rng)

    def record(step: int, loss: float, deep: bool = False) -> bool:
        """Log; with held-out episodes, score them and stop after `patience` scores without a gain."""
        losses.append(loss)
        on_step()
        if deep and episodes and (step + 1) % settings.eval_every == 0:
            scores.append(holdout_score(model, episodes))
            return len(scores) - 1 - int(np.argmax(scores)) >= settings.patience
        return False

    adam_steps(model, batch, settings.kernel_steps, settings.kernel_lr, record, kernel_only=True)
    if episodes:
        scores.append(holdout_score(model, episodes))
    adam_steps(model, batch, deep_steps, settings.lr, lambda step, loss: record(step, loss, True))
    return model, losses, scores


def holdout_split(n: int, share: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of the fit experiments held out to choose the number of phase-2 steps (none if n < 2)."""
    if n < 2:
        return np.zeros(0, dtype=int)
    return np.sort(rng.permutation(n)[: min(n - 1, max(1, round(share * n)))])


# The optimizer -----------------------------------------------------------------------------------
class FSBO(LearnedOptimizer):
    """Few-shot BO: the meta-trained deep-kernel GP, fine-tuned per ask, EI over the target pool."""

    VERSION = 4

    @classmethod
    def meta_train(cls, data, seed: int, progress: Callable[[float], None], **params) -> dict:
        """Phase-2 steps chosen on held-out fit experiments, then both phases on every fit experiment."""
        settings = Settings(**params)
        rng = np.random.default_rng(seed)
        tables = [experiment_tables(data, e) for e in data.fit]
        centre, scale = descriptor_scaling([t.descriptors for t in tables])
        held = holdout_split(len(tables), settings.holdout_share, rng)
        runs = 2 if len(held) else 1
        planned = runs * (settings.kernel_steps + settings.train_steps)
        done = [0]

        def tick() -> None:
            done[0] += 1
            if done[0] % max(1, planned // 100) == 0:
                progress(min(done[0] / planned, 1.0))

        scores: list[float] = []
        deep_steps = settings.train_steps
        with computing(settings.threads):
            if len(held):
                inner = [t for i, t in enumerate(tables) if i not in set(held)]
                episodes = held_out_episodes([tables[i] for i in held], data.priors, settings, centre,
                                             scale, rng)
                _, _, scores = meta_fit(inner, data.priors, settings, centre, scale, seed,
                                        settings.train_steps, tick, episodes)
                deep_steps = int(np.argmax(scores)) * settings.eval_every  # ties: fewer steps
            model, losses, _ = meta_fit(tables, data.priors, settings, centre, scale, seed + 1,
                                        deep_steps, tick)
        progress(1.0)
        spans = np.array_split(np.array(losses), min(LOSS_POINTS, max(len(losses), 1)))
        return {"model": {k: v.detach().clone().reshape(-1) for k, v in model.state_dict().items()},
                "centre": torch.as_tensor(centre), "scale": torch.as_tensor(scale),
                "inputs": int(model.phi_width + 1), "deep_steps": deep_steps,
                "holdout": [data.fit[i] for i in held], "holdout_scores": scores,
                "loss_curve": [float(s.mean()) for s in spans if len(s)]}

    def __init__(self, problem: Problem, seed: int, *, checkpoint, **params):
        super().__init__(problem, seed, checkpoint=checkpoint)
        self.settings = Settings(**params)
        state = checkpoint.state
        self.centre, self.scale = state["centre"].numpy(), state["scale"].numpy()
        self.descriptors = problem.descriptor_matrix().astype(float)
        self.target_level = len(problem.fidelities) - 1
        width = problem.arrays().x.shape[1] + 2 * self.descriptors.shape[1] + 1
        if width != state["inputs"]:
            raise ValueError(f"FSBO checkpoint expects {state['inputs']} inputs, this problem gives {width}")
        self.model = DeepKernelGP(width, self.settings).to(DTYPE)
        shapes = {k: v.shape for k, v in self.model.state_dict().items()}
        self.trained = {k: v.reshape(shapes[k]) for k, v in state["model"].items()}  # stored 1-d
        self.prior_inputs, self.prior_scores = self._prior_data()
        levels = np.full(len(problem.arrays()), self.target_level)
        self.pool_inputs = self._inputs(problem.arrays().x, levels)

    def _inputs(self, x: np.ndarray, levels: np.ndarray) -> torch.Tensor:
        return gp_inputs(x, levels, self.descriptors, self.target_level, self.centre, self.scale)

    def _prior_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The prior's inputs and per-fidelity scores (scored on every prior run, then capped)."""
        x, levels, values = self.problem.prior_arrays
        if not len(values):
            return self._inputs(x.reshape(0, self.problem.arrays().x.shape[1]), levels), \
                torch.zeros(0, dtype=DTYPE)
        scores = normal_scores_by_level(-self.problem.objective.sign * values, levels)
        keep = cap_prior(levels, self.settings.max_prior, self.rng)
        return self._inputs(x[keep], levels[keep]), torch.as_tensor(scores[keep], dtype=DTYPE)

    def _target_data(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Target observations: inputs and normal scores among themselves."""
        seen = [(o.candidate, o.value) for _, o in self.history
                if o.fidelity == self.problem.target and o.candidate is not None]
        ids = np.array([c for c, _ in seen], dtype=int)
        values = -self.problem.objective.sign * np.array([v for _, v in seen], dtype=float)
        scores = normal_scores_by_level(values, np.zeros(len(ids), int)) if len(ids) else values
        return self.pool_inputs[ids], torch.as_tensor(scores, dtype=DTYPE)

    def fitted(self) -> tuple[DeepKernelGP, torch.Tensor]:
        """The checkpoint's GP fine-tuned on this episode's data, in eval mode; the target scores."""
        x_t, y_t = self._target_data()
        x = torch.cat([x_t, self.prior_inputs])
        y = torch.cat([y_t, self.prior_scores])
        self.model.load_state_dict(self.trained)
        adam_steps(self.model, lambda _: (x, y), self.settings.finetune_steps, self.settings.finetune_lr,
                   kernel_only=self.settings.finetune == "kernel")
        self.model.set_train_data(x, y, strict=False)
        return self.model.eval(), y_t

    def acquisition(self, ids: np.ndarray) -> torch.Tensor:
        """Log-EI of the candidates `ids` at the target (no target observation: posterior mean)."""
        model, y_t = self.fitted()
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", gpytorch.utils.warnings.NumericalWarning)
            posterior = model(self.pool_inputs[ids])
            mean, sd = posterior.mean, posterior.variance.clamp_min(1e-12).sqrt()
        if not len(y_t):
            return mean
        return log_expected_improvement(mean, sd, float(y_t.max()))

    def ask(self) -> Query:
        ids = self.pool_ids()
        if not len(self.prior_scores) and len(ids) == len(self.problem.arrays()):
            return self.query_candidate(int(ids[int(self.rng.integers(len(ids)))]))
        with computing(self.settings.threads):
            scores = self.acquisition(ids)
        return self.query_candidate(int(ids[int(torch.argmax(scores))]))
