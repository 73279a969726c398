"""Stage 2, trajectory simulation: teachers play the curated episodes; the trajectories of the
teachers best in expectation are kept.

Teachers (`TEACHERS`): the strong non-learned baselines `extrapolate` (Step-Law-style optimum
location) and `best-prior`, the `TrendExpert` below greedily and at two sampling temperatures
(diversity the selection can exploit), the `Cautious` teacher (stay where the cheap runs were
safe), and `random` for coverage. A teacher configuration is (name, parameters, seeds).

Learned teachers (`LEARNED`, the `learned_teachers` setting): the project's `nap` and `fsbo`
presets, one seed each (NAP asks deterministically, FSBO nearly so). Each is trained by
`bench.training.checkpoint_for` on the real task's train-only training data (the `TrainingData`
`meta_train` receives, never a curated copy), so it sees train experiments only: the test
experiments are not in that data, and a copy of the task whose test outcomes are noise gives the
same checkpoint. That is the very checkpoint the NAP/FSBO baseline uses for the task or cv fold
(same file: scope, train-data fingerprint and split agree), so a `bench run` that benchmarks them
too trains each once. They then play the curated episodes (`MethodSpec.make` on the curated
Problem, through the harness's loop) and are ranked by expected score like every configuration.
They are off by default: the curated episodes come from the very experiments they were trained
on, so their expected score there is in-sample. With them, NAP was kept on 52 of 192 sft_lora
and 55 of 192 grpo trajectories (FSBO 34 and 29), displacing the greedy trend expert (54 -> 17,
60 -> 34) and the cautious teacher: labels partly informed by remembered target outcomes, which
the policy's features cannot reproduce on an unseen experiment; and stage 2 took 10x longer (43 s
instead of 4 s on sft_lora, 120 s instead of 10 s on grpo, mostly FSBO's per-ask fine-tuning).
Teachers trained per inner fold, playing only the experiments they did not see, are the way to
have them without that; the preset `autollmresearch-learned-teachers` measures them as they are.

Selection by expected score, not hindsight: for each curated episode, every configuration plays
`EXPECTATION_SEEDS` sibling episodes (the same curated experiment, prior protocol and budget with
the episode seeds `seed + SIBLING_STRIDE * k`, k = 1..EXPECTATION_SEEDS), each of its seeds on
each sibling; its expected score is its mean final pregret there (ties: the lower mean pregret
over the steps, reaching a good candidate sooner; then the order of `TEACHERS`). The `keep`
configurations of the best expected score then play the episode itself (a stochastic one with
its first seed, whatever it draws) and those trajectories are kept, their expected score
recorded: a lucky draw on the episode is never what makes a label. Every step carries the
rationale `EpisodeView.explain` writes for its candidate: the cheap-fidelity trend it
extrapolates and the prediction at the target.
"""

from __future__ import annotations

import numpy as np
import torch

from agents.policy.episodes import TrainingEpisode
from agents.policy.features import CANDIDATE_COLUMNS, EpisodeView, msd, smooth
from agents.policy.trajectories import Step, Trajectory
from bench.gym.problem import Query
from bench.loop import run
from bench.methods import method
from bench.numerics import normal_scores_by_level
from bench.optimizer import Checkpoint, Optimizer
from bench.training import TrainingData, checkpoint_for, checkpoint_path, training_data

TREND, TO_OPTIMUM = CANDIDATE_COLUMNS.index("trend"), CANDIDATE_COLUMNS.index("to_optimum")
AT_TOP, SUPPORT, TO_BEST = (CANDIDATE_COLUMNS.index(c) for c in ("at_top", "support", "to_best"))

# Sibling episodes a configuration's expected score is the mean over. Stage 2 of sft_lora (default
# Settings, CPU seconds): 1.5-1.8 with hindsight selection; 4.9-5.2 with 3 siblings, 5.4-6.7 with 4.
EXPECTATION_SEEDS = 3
SIBLING_STRIDE = 7919  # sibling k of the episode with seed s has seed s + SIBLING_STRIDE * k


class TrendExpert(Optimizer):
    """The extrapolating expert: each candidate's cheap-fidelity score trend extrapolated to the
    target, minus its distance to the extrapolated optimum, blended with the episode's own target
    runs as they arrive (weight = their kernel support / (support + 1)); greedy at temperature 0,
    else a softmax draw at `temperature`."""

    def __init__(self, problem, seed, temperature: float = 0.0, view: EpisodeView | None = None):
        super().__init__(problem, seed)
        self.view, self.temperature = view or EpisodeView(problem), temperature
        self.prior = self.prior_score(self.view.prior_features)

    def prior_score(self, f: np.ndarray) -> np.ndarray:
        """What the cheap runs say of each candidate (`f`: the candidate features)."""
        return f[:, TREND] - 2.0 * f[:, TO_OPTIMUM]

    def candidates(self) -> np.ndarray:
        """The candidate ids the next ask chooses among."""
        return self.pool_ids()

    def scores(self) -> np.ndarray:
        """The prior's score blended with the own target runs' (the view's `own` and
        `own_support` columns, computed here for the target runs alone: teachers ask nothing else)."""
        ids = [o.candidate for _, o in self.history]
        if not ids:
            return self.prior
        values = np.array([o.value for _, o in self.history])
        z = normal_scores_by_level(-self.view.sign * values, np.zeros(len(ids)))
        own, support = smooth(msd(self.view.cand_x, self.view.cand_x[ids]), z, self.view.own_bandwidth)
        weight = support / (support + 1.0)
        return (1 - weight) * self.prior + weight * 2.0 * own

    def ask(self) -> Query:
        ids, s = self.candidates(), self.scores()
        if self.temperature > 0:
            p = np.exp((s[ids] - s[ids].max()) / self.temperature)
            return self.query_candidate(int(ids[self.rng.choice(len(ids), p=p / p.sum())]))
        return self.query_candidate(int(ids[int(np.argmax(s[ids]))]))


class Cautious(TrendExpert):
    """Stay where the cheap runs were safe. With t and t-1 the two most expensive prior rungs the
    view reads (`EpisodeView.levels`), w(i) the kernel weight of rung t's runs near target
    candidate i (the `support` column) and r_l the diverged share of rung l's runs:

        d_l(i)   = the diverged share of rung l's runs near i: `features.smooth` of their 0/1
                   divergence flags minus r_l, plus r_l (shrunk to r_l by one pseudo-run: an
                   unexplored neighbourhood is as risky as the rung), over mean squared
                   unit-cube distances at the bandwidth the view chose for rung l
        risk(i)  = d_t(i) + max(0, d_t(i) - d_{t-1}(i))     (more when divergence grows with scale)
        prior(i) = at_top(i) - 1 / (1 + w(i)) - to_best(i) - RISK_WEIGHT risk(i)

    (at_top - 1 / (1 + w) is the smoothed score with its pseudo-run at -1 instead of 0: a
    neighbourhood the cheap runs barely cover counts as a poor one), blended with the episode's
    own target runs as `TrendExpert` blends them; greedy among the safe, supported untried
    candidates (risk <= MAX_RISK and w >= MIN_SUPPORT: inside the region the cheap runs
    covered), among all untried ones only when none is."""

    # On curated train episodes (64 each of sft_lora, grpo, pretrain_hparams; first pick): RISK_WEIGHT
    # 2 / 4 / 8 -> grpo pregret 0.27 / 0.27 / 0.23, diverged 14% / 14% / 8%, the others alike;
    # MAX_RISK 0.15 / 0.25 / 0.4 changed little.
    RISK_WEIGHT, MAX_RISK, MIN_SUPPORT = 8.0, 0.25, 0.5

    def __init__(self, problem, seed, view: EpisodeView | None = None):
        view = view or EpisodeView(problem)
        self.risk = divergence_risk(view)  # before the base class reads `prior_score`
        super().__init__(problem, seed, 0.0, view)

    def prior_score(self, f: np.ndarray) -> np.ndarray:
        support = np.expm1(f[:, SUPPORT])
        return f[:, AT_TOP] - 1.0 / (1.0 + support) - f[:, TO_BEST] - self.RISK_WEIGHT * self.risk

    def candidates(self) -> np.ndarray:
        ids = self.pool_ids()
        support = np.expm1(self.view.prior_features[ids, SUPPORT])
        safe = ids[(self.risk[ids] <= self.MAX_RISK) & (support >= self.MIN_SUPPORT)]
        return safe if len(safe) else ids


def divergence_risk(view: EpisodeView) -> np.ndarray:
    """`Cautious`'s risk(i) of every target candidate (zeros without prior rungs or flags), in [0, 2]."""
    problem, n = view.problem, len(view.cand_x)
    if not view.levels or "diverged" not in problem.prior:
        return np.zeros(n)
    x, level, _ = problem.prior_arrays
    flags = problem.prior["diverged"].to_numpy(bool).astype(float)
    shares = []
    for i in range(max(0, len(view.levels) - 2), len(view.levels)):
        rows = level == view.levels[i]
        h = view.summaries[i]["h"]
        rate = flags[rows].mean()
        shares.append(rate + smooth(msd(view.cand_x, x[rows]), flags[rows] - rate, h)[0])
    top = shares[-1]
    return top + np.maximum(0.0, top - shares[0]) if len(shares) == 2 else top


TEACHERS: tuple[tuple[str, dict, int], ...] = (  # (name, parameters, seeds)
    ("extrapolate", {}, 1),
    ("best-prior", {}, 1),
    ("trend-expert", {"temperature": 0.0}, 1),
    ("trend-expert", {"temperature": 0.3}, 2),
    ("trend-expert", {"temperature": 1.0}, 2),
    ("cautious", {}, 1),
    ("random", {}, 2),
)


# The learned teachers: presets (configs/methods.yaml) with their own parameters, one seed each.
LEARNED: tuple[tuple[str, dict, int], ...] = (("nap", {}, 1), ("fsbo", {}, 1))


def learned_checkpoints(real: TrainingData, seed: int) -> dict[str, Checkpoint]:
    """The learned teachers' checkpoints, trained on `real` (a task's train-only `TrainingData`,
    as `TrainingData.of` gives it) or found: `checkpoint_for` on the train-only task resolves to
    the file the NAP/FSBO baseline of the task (or cv fold) uses, since its name hashes the
    preset, the scope (task and fold), the train table's fingerprint and the seed, and
    `TrainingData.of` splits the train-only task as it splits the full one (checked on every
    built-in task's fixed split and cv folds). Torch's global generator is left as it was,
    whether a checkpoint was trained here or found."""
    with torch.random.fork_rng(devices=[]):
        return {name: checkpoint_for(method(name), real.task, seed) for name, _, _ in LEARNED}


def learned_key(real: TrainingData, seed: int) -> list[str]:
    """The learned teachers' checkpoint file names (they hash preset parameters, class VERSION,
    train data and seed; nothing is trained): what the kept trajectories also depend on."""
    return [checkpoint_path(spec, training_data(spec, real.task, seed), seed).name
            for spec in (method(name) for name, _, _ in LEARNED)]


def teacher(name: str, params: dict, ep: TrainingEpisode, seed: int,
            checkpoints: dict[str, Checkpoint] | None = None) -> Optimizer:
    """The optimizer of teacher `name` on `ep`; a learned one's with its checkpoint of
    `checkpoints` (`learned_checkpoints`). A curated task is a copy of the real task with the
    same space, encoder and `Fidelity` objects (a pseudo-target only cuts the ladder, keeping
    every descriptor), so a learned teacher's input widths always fit its curated episodes."""
    if name == "trend-expert":  # shares the episode's view when it has every feature
        return TrendExpert(ep.problem, seed, **params, view=ep.view if ep.view.cross_fidelity else None)
    if name == "cautious":  # reads no cross-fidelity column: the episode's view always serves
        return Cautious(ep.problem, seed, **params, view=ep.view)
    return method(name).make(ep.problem, seed, (checkpoints or {}).get(name))


def play(ep: TrainingEpisode, optimizer: Optimizer) -> list[int]:
    """The candidate ids `optimizer` runs in `ep` (the harness's loop, `bench.loop`)."""
    return [o.candidate for o in run(optimizer, ep.oracle(), ep.problem).outcomes]


def pregrets(ep: TrainingEpisode, chosen: list[int]) -> np.ndarray:
    """pregret of the best target value after each of the runs `chosen` (`Scorer.pregret`)."""
    return np.minimum.accumulate(ep.scorer.pregret(ep.values[chosen]))


def label(name: str, params: dict) -> str:
    return name + "".join(f"@{v}" for v in params.values())


def simulate(
    episodes: list[TrainingEpisode],
    seed: int,
    keep: int = 2,
    *,
    data: TrainingData,
    cautious: bool = True,
    teachers: tuple[tuple[str, dict, int], ...] = TEACHERS,
    learned: TrainingData | None = None,
) -> list[Trajectory]:
    """The trajectories on each episode of its `keep` teacher configurations best in expectation
    (see the module docstring). `data`: the curated training data the episodes were drawn from
    (it builds the siblings); `cautious=False` leaves the cautious teacher out (an ablation);
    `learned`: the real task's train-only training data the learned teachers (`LEARNED`) are
    trained on, ranked after `teachers` (None leaves them out).
    Teacher seeds: `seed + 1000 e + 10 k + s` for episode e, sibling k (0: the episode) and the
    configuration's seed s."""
    configs = [c for c in teachers if cautious or c[0] != "cautious"]
    checkpoints = {} if learned is None else learned_checkpoints(learned, seed)
    configs += [c for c in LEARNED if c[0] in checkpoints]
    out = []
    for e, ep in enumerate(episodes):
        _, exp, prior, budget, episode_seed = ep.key
        siblings = [
            TrainingEpisode.of(data, exp, prior, budget, episode_seed + SIBLING_STRIDE * k,
                               ep.view.cross_fidelity, risk=ep.view.risk)
            for k in range(1, EXPECTATION_SEEDS + 1)
        ]
        ranked = []
        for c, (name, params, seeds) in enumerate(configs):
            curves = [
                pregrets(sib, play(sib, teacher(name, params, sib, seed + 1000 * e + 10 * k + s,
                                                checkpoints)))
                for k, sib in enumerate(siblings, 1)
                for s in range(seeds)
            ]
            finals, means = [r[-1] for r in curves], [r.mean() for r in curves]
            ranked.append((float(np.mean(finals)), float(np.mean(means)), c))
        ranked.sort()
        for expected, _, c in ranked[:keep]:
            name, params, _ = configs[c]
            chosen = play(ep, teacher(name, params, ep, seed + 1000 * e, checkpoints))
            steps = tuple(
                Step(i, float(ep.values[i]), rationale(ep.view, chosen[:t], ep.values, i))
                for t, i in enumerate(chosen)
            )
            final = float(pregrets(ep, chosen)[-1])
            out.append(Trajectory(exp, prior, budget, episode_seed, label(name, params), steps, final,
                                  ep.problem.task, expected))
    return out


def rationale(view: EpisodeView, before: list[int], values: np.ndarray, candidate: int) -> str:
    """The rationale of asking `candidate` after the target runs `before`, its predicted score
    being the extrapolated trend."""
    x = view.cand_x[before]
    _, _, f = view.state(x, np.full(len(before), view.target_level), values[before], 1.0, 1.0)
    return view.explain(candidate, float(f[candidate, TREND] if view.cross_fidelity else f[candidate, 0]))
