"""What the policy reads of an episode, in any search space and at any fidelities.

Nothing here depends on the number or kind of parameters or on the descriptors' names, so one
trained policy runs on every task and on a user's spec:
  fidelity features  per fidelity: log10 of its cost over the target's, the RMS of its log10
                     descriptors' differences from the target's, and its distance in levels from
                     the target (1 = cheapest, 0 = target).
  tokens             the prior's runs (a representative subset, `PRIOR_TOKENS`) and the episode's
                     own runs: [fidelity features | normal score among the runs at that fidelity |
                     at target | raw | diverged], raw being the run's robust z-score at its
                     fidelity, sign(z) log(1 + |z|) with z = (value - median) / (1.4826 MAD),
                     oriented larger-better: how bad a run was in the objective's own terms, which
                     normal scores erase; diverged: the run diverged (the task's rule). The
                     configuration enters through distances: the model's attention is biased by
                     the mean squared unit-cube distance between a candidate and a token, which
                     exists for any encoding width.
  candidate features per target candidate, what the cheap runs say about it (`CROSS_FIDELITY`
                     columns), what the episode's own target runs say, and the budget:
      at_top     kernel-smoothed normal score at the most expensive prior fidelity
      support    log(1 + kernel weight there): how well cheap runs cover the candidate
      trend      the per-fidelity smoothed scores regressed on log10 cost (ridge on the slope)
                 and extrapolated to the target cost
      slope      that regression's slope per decade of cost
      to_optimum RMS distance to the optimum's location extrapolated over fidelities (the mean
                 of each fidelity's best runs, regressed on its log10 descriptors as Step Law
                 regresses on N and D)
      to_extrapolated  RMS distance to the optimum the prior extrapolates to, which the
                 `extrapolate` baseline also starts from (`bench.extrapolation`: each fidelity's
                 best 3 runs, least squares on the descriptors, no ridge): the expert's pick,
                 which the ridge-smoothed location above cannot reproduce where full sweeps pin
                 the optimum's drift down. Added
                 with the full ladder priors of `curation` (version 7), on inner folds (outer
                 cv fold 1, train experiments only): pretrain_hparams out-of-fold pregret
                 0.142 -> 0.130 (T=1 pick 0.168 -> 0.127), sft_lora 0.024 -> 0.018
      to_best    RMS distance to the best run of the most expensive prior fidelity
      own, own_support, to_own_best, to_own   the same from the episode's own target runs
      left, trials_left                       share of the budget left, trials left / 10
      raw_top    kernel-smoothed raw score (above) at the most expensive prior fidelity
      risk_top   kernel-smoothed share of diverged runs there
      onset      where divergence sets in as scale grows: per prior fidelity with diverged runs,
                 the RMS distance from the candidate to the nearest one, regressed on log10 cost
                 (ridge `LOCATION_RIDGE`) and extrapolated to the target, in [-1, 1] (<= 0: the
                 candidate is predicted inside the diverging region); 1 without divergence, the
                 one fidelity's distance with one
Scores are normal scores per fidelity (larger is better), so levels with different loss scales
(the landscape shift) are comparable. Without cross-fidelity features (an ablation) the trend,
slope, to_optimum, to_extrapolated and onset columns are zero and prior tokens carry no
fidelity features: the policy sees the cheap runs as one undifferentiated set. Without risk
features (an ablation) the raw and diverged token fields and the raw_top, risk_top and onset
columns are zero.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.stats import norm

from bench.extrapolation import extrapolated_optimum
from bench.gym.problem import Problem, descriptor_matrix
from bench.numerics import normal_scores_by_level

BANDWIDTHS = (0.05, 0.1, 0.2, 0.4)  # RMS unit-cube distances tried by leave-one-out per fidelity
DEFAULT_BANDWIDTH = 0.2  # with fewer than MIN_RUNS runs
MIN_RUNS = 3  # a prior fidelity with fewer runs does not enter the trend
LOO_RUNS = 256  # runs the bandwidth's leave-one-out is computed on, at most
PRIOR_TOKENS = 64
# Ridges on slopes per decade of cost, relative to the total weight. Chosen on train experiments
# (benchmarks/policy_design.py: the greedy expert's first-pick nregret, mean over the six tasks):
# score trend 0 / 0.05 / 0.1 / 0.5 -> 1.71 / 0.93 / 0.65 / 0.64; then the optimum's location
# regressed on log cost, ridge 0.05 / 0.1 / 0.5 -> 0.88 / 0.63 / 0.64, or on every log descriptor,
# ridge 0.1 / 0.5 -> 0.59 / 0.64 (the best 10% of a fidelity's runs; its best 3: 0.62).
RIDGE = 0.5
LOCATION_RIDGE = 0.1
TOP_SHARE, TOP_MIN = 0.1, 2  # a fidelity's best runs (this share, at least TOP_MIN) locate its optimum
LOCATION_BY = "descriptors"  # the location's regressors: every log descriptor, or "cost"

FIDELITY_WIDTH = 3
TOKEN_WIDTH = FIDELITY_WIDTH + 4
CANDIDATE_COLUMNS = (
    "at_top",
    "support",
    "trend",
    "slope",
    "to_optimum",
    "to_extrapolated",
    "to_best",
    "own",
    "own_support",
    "to_own_best",
    "to_own",
    "left",
    "trials_left",
    "raw_top",
    "risk_top",
    "onset",
)
CROSS_FIDELITY = ("trend", "slope", "to_optimum", "to_extrapolated", "onset")
RISK = ("raw_top", "risk_top", "onset")
CANDIDATE_WIDTH = len(CANDIDATE_COLUMNS)


def fidelity_features(fidelities) -> np.ndarray:
    """(F, FIDELITY_WIDTH), cheapest first (see the module docstring)."""
    logs = descriptor_matrix(fidelities)
    cost = logs[:, -1] - logs[-1, -1]
    desc = logs[:, :-1] - logs[-1, :-1]
    spread = np.sqrt((desc**2).mean(axis=1)) if desc.shape[1] else np.zeros(len(logs))
    n = len(logs)
    steps = (n - 1 - np.arange(n)) / max(n - 1, 1)
    return np.column_stack([cost, spread, steps]).astype(np.float32)


def raw_scores(values: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Robust z-scores of `values` (larger is better) within each level, log-compressed:
    sign(z) log(1 + |z|), z = (v - median) / (1.4826 MAD) (MAD 0: the mean absolute deviation,
    then 1)."""
    out = np.zeros(len(values))
    for lv in np.unique(level):
        rows = level == lv
        v = values[rows]
        centre = np.median(v)
        spread = 1.4826 * np.median(np.abs(v - centre)) or np.mean(np.abs(v - centre)) or 1.0
        z = (v - centre) / spread
        out[rows] = np.sign(z) * np.log1p(np.abs(z))
    return out


def onset(u: np.ndarray, gaps: list[np.ndarray | None]) -> np.ndarray:
    """Each candidate's distance to divergence extrapolated to the target (u = 0) from the prior
    fidelities at log10 relative costs `u` where runs diverged (`gaps[l]`: distances to the
    nearest diverged run, None without one); see `onset` in the module docstring."""
    seen = [i for i, g in enumerate(gaps) if g is not None]
    if not seen:
        return 1.0
    if len(seen) == 1:
        return gaps[seen[0]]
    g = np.array([gaps[i] for i in seen])
    return np.clip(ridge_line(u[seen], g, np.ones_like(g), LOCATION_RIDGE)[0], -1, 1)


def msd(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, d), (m, d) -> (n, m) mean squared differences (0 columns: zeros)."""
    if a.shape[1] == 0:
        return np.zeros((len(a), len(b)))
    return ((a[:, None, :] - b[None, :, :]) ** 2).mean(axis=2)


def smooth(dist: np.ndarray, z: np.ndarray, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Nadaraya-Watson mean of scores `z` at query points, shrunk to 0 by one pseudo-run, and
    the kernel weight behind it; `dist` (queries, runs) are mean squared distances."""
    w = np.exp(-dist / (2 * h * h))
    weight = w.sum(axis=1)
    return w @ z / (weight + 1.0), weight


def bandwidth(dist: np.ndarray, z: np.ndarray) -> float:
    """The `BANDWIDTHS` entry with the least leave-one-out squared error of `smooth` on the runs
    themselves (`dist` runs x runs); `DEFAULT_BANDWIDTH` with fewer than MIN_RUNS runs."""
    if len(z) < MIN_RUNS:
        return DEFAULT_BANDWIDTH
    errors = []
    for h in BANDWIDTHS:
        w = np.exp(-dist / (2 * h * h))
        np.fill_diagonal(w, 0.0)
        errors.append(float(((w @ z / (w.sum(axis=1) + 1.0) - z) ** 2).mean()))
    return BANDWIDTHS[int(np.argmin(errors))]


def ridge_line(
    u: np.ndarray, m: np.ndarray, w: np.ndarray, ridge: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares m ~ a + b u per column with a ridge on b (`ridge` x the total
    weight): `u` (L,), `m` and `w` (L, ...) -> intercepts a (the value at u = 0, the target) and
    slopes b."""
    ridge = RIDGE if ridge is None else ridge
    u = u.reshape((-1,) + (1,) * (m.ndim - 1))
    W, U, M = w.sum(0), (w * u).sum(0), (w * m).sum(0)
    UU, UM = (w * u * u).sum(0) + ridge * W, (w * u * m).sum(0)
    det = W * UU - U * U
    b = (W * UM - U * M) / np.where(det > 0, det, 1.0)
    a = (M - b * U) / np.where(W > 0, W, 1.0)
    return a, b


def ridge_plane(d: np.ndarray, y: np.ndarray, ridge: float) -> np.ndarray:
    """Least squares y ~ a + d b (rows: fidelities; `d` their log10 descriptors minus the
    target's) with a ridge of `ridge` x rows on b; returns a, the fit at the target."""
    x = np.hstack([np.ones((len(d), 1)), d])
    penalty = ridge * len(d) * np.diag([0.0] + [1.0] * d.shape[1])
    return np.linalg.lstsq(x.T @ x + penalty, x.T @ y, rcond=None)[0][0]


class EpisodeView:
    """One episode as the policy reads it: built once from the `Problem` (the prior's part),
    then `state(...)` for each point of the episode's own history."""

    def __init__(self, problem: Problem, cross_fidelity: bool = True, risk: bool = True):
        self.problem, self.cross_fidelity, self.risk = problem, cross_fidelity, risk
        self.fidelity = fidelity_features(problem.fidelities)
        self.target_level = len(problem.fidelities) - 1
        self.sign = problem.objective.sign
        self.cand_x = problem.arrays().x.astype(np.float64)
        x, level, values = problem.prior_arrays
        score = normal_scores_by_level(-self.sign * values, level) if len(values) else np.zeros(0)
        raw = raw_scores(-self.sign * values, level)
        diverged = (problem.prior["diverged"].to_numpy(float) if "diverged" in problem.prior
                    else np.zeros(len(values)))
        self.levels, self.summaries = [], []  # prior fidelities entering the trend, cheapest first
        smoothed, weights, raw_smoothed, diverged_share, gaps = [], [], [], [], []
        for lv in sorted(set(level.tolist())):
            rows = level == lv
            if rows.sum() < MIN_RUNS:
                continue
            sub = np.flatnonzero(rows)[
                np.linspace(0, rows.sum() - 1, min(LOO_RUNS, rows.sum())).round().astype(int)
            ]
            h = bandwidth(msd(x[sub], x[sub]), score[sub])
            dist = msd(self.cand_x, x[rows])
            m, weight = smooth(dist, score[rows], h)
            raw_smoothed.append(smooth(dist, raw[rows], h)[0])
            diverged_share.append(smooth(dist, diverged[rows], h)[0])
            bad = diverged[rows] > 0
            gaps.append(np.sqrt(dist[:, bad].min(axis=1)) if bad.any() else None)
            n_top = max(TOP_MIN, int(np.ceil(TOP_SHARE * rows.sum())))
            top = np.argsort(-score[rows], kind="stable")[:n_top]
            self.levels.append(lv)
            self.summaries.append(
                {
                    "h": h,
                    "location": x[rows][top].mean(axis=0),
                    "best": x[rows][np.argmax(score[rows])],
                    "values": -self.sign * values[rows],
                }
            )
            smoothed.append(m)
            weights.append(weight)
        n = len(self.cand_x)
        self.smoothed = np.array(smoothed).reshape(len(self.levels), n)
        base = np.zeros((n, 7))
        if self.levels:
            u = self.fidelity[self.levels, 0].astype(float)
            support = np.array(weights).reshape(len(self.levels), n)
            trend, slope = ridge_line(u, self.smoothed, support / (support + 1.0))
            locations = np.array([s["location"] for s in self.summaries])
            if LOCATION_BY == "descriptors":
                logs = descriptor_matrix(problem.fidelities)
                locations = ridge_plane(logs[self.levels, :-1] - logs[-1, :-1], locations, LOCATION_RIDGE)
            else:
                locations = ridge_line(u, locations, np.ones_like(locations), LOCATION_RIDGE)[0]
            self.optimum_location = np.clip(locations, 0, 1)
            base[:, 0], base[:, 1] = self.smoothed[-1], np.log1p(support[-1])
            base[:, 2], base[:, 3] = np.clip(trend, -3, 3), slope
            base[:, 4] = np.sqrt(msd(self.cand_x, self.optimum_location[None])[:, 0])
            with np.errstate(over="ignore"):  # a far extrapolation overflows exp(); clipped to the bounds
                extrapolated = problem.encoder.one(extrapolated_optimum(problem))
            base[:, 5] = np.sqrt(msd(self.cand_x, extrapolated[None])[:, 0])
            base[:, 6] = np.sqrt(msd(self.cand_x, self.summaries[-1]["best"][None])[:, 0])
            self.own_bandwidth = self.summaries[-1]["h"]
        else:
            self.optimum_location, self.own_bandwidth = None, DEFAULT_BANDWIDTH
        risky = np.zeros((n, len(RISK)))
        if self.levels and risk:
            shares = np.array(diverged_share).reshape(len(self.levels), n)
            risky[:, 0], risky[:, 1] = raw_smoothed[-1], shares[-1]
            risky[:, 2] = onset(u, gaps) if cross_fidelity else 0.0
        if not cross_fidelity:
            base[:, [CANDIDATE_COLUMNS.index(c) for c in CROSS_FIDELITY if c not in RISK]] = 0.0
        self.base, self.risky = base, risky
        keep = representative(level, score, PRIOR_TOKENS)
        fid = self.fidelity[level[keep]] if cross_fidelity else np.zeros((len(keep), FIDELITY_WIDTH))
        self.prior_tokens = np.column_stack([fid, score[keep], np.zeros(len(keep)), risk * raw[keep],
                                             risk * diverged[keep]]).astype(np.float32)
        self.prior_dist = msd(self.cand_x, x[keep]).astype(np.float32)

    def state(
        self,
        own_x: np.ndarray,
        own_level: np.ndarray,
        own_values: np.ndarray,
        left: float,
        trials_left: float,
        own_diverged: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(tokens (H, TOKEN_WIDTH), distances (N, H), candidate features (N, CANDIDATE_WIDTH))
        after the episode's own runs (`own_values` in the objective's units; `own_diverged`
        their divergence flags, none diverged when not given)."""
        own_x = np.asarray(own_x, float).reshape(len(own_level), self.cand_x.shape[1])
        own_level = np.asarray(own_level, int)
        oriented = -self.sign * np.asarray(own_values, float)
        z = normal_scores_by_level(oriented, own_level) if len(own_level) else np.zeros(0)
        own_raw = raw_scores(oriented, own_level)
        own_diverged = np.zeros(len(own_level)) if own_diverged is None else np.asarray(own_diverged, float)
        at = own_level == self.target_level
        own = np.zeros((len(self.cand_x), 4))
        own[:, 2:] = 1.0
        if at.any():
            d = msd(self.cand_x, own_x[at])
            own[:, 0], weight = smooth(d, z[at], self.own_bandwidth)
            own[:, 1] = np.log1p(weight)
            own[:, 2] = np.sqrt(d[:, int(np.argmax(z[at]))])
            own[:, 3] = np.sqrt(d.min(axis=1))
        budget = np.tile([left, trials_left / 10.0], (len(self.cand_x), 1))
        features = np.hstack([self.base, own, budget, self.risky]).astype(np.float32)
        tokens = np.column_stack([self.fidelity[own_level], z, at, self.risk * own_raw,
                                  self.risk * own_diverged]).astype(np.float32)
        dist = np.hstack([self.prior_dist, msd(self.cand_x, own_x).astype(np.float32)])
        return np.vstack([self.prior_tokens, tokens]), dist, features

    @functools.cached_property
    def prior_features(self) -> np.ndarray:
        """The candidate features before any run of the episode's own (what the prior says; the
        budget columns at a whole budget of one trial), built once: every teacher reads them."""
        return self.state_after([], 1.0, 1.0)[2]

    def state_after(self, outcomes, left: float, trials_left: float):
        """`state` after an optimizer's outcomes (`Outcome`s of this episode, any fidelity)."""
        p, level = self.problem, {f.name: i for i, f in enumerate(self.problem.fidelities)}
        x = np.array(
            [
                p.arrays(o.fidelity).x[o.candidate] if o.candidate is not None else p.encoder.one(o.config)
                for o in outcomes
            ]
        ).reshape(len(outcomes), p.encoder.width)
        levels = np.array([level[o.fidelity] for o in outcomes], int)
        return self.state(x, levels, np.array([o.value for o in outcomes], float), left, trials_left,
                          np.array([o.diverged for o in outcomes], float))

    # What the policy says about a candidate --------------------------------------------------
    def predicted_value(self, score: float) -> float | None:
        """The target value at normal score `score`: each prior fidelity's value at that
        quantile, extrapolated to the target cost along a ridge line; None without a prior."""
        if not self.levels:
            return None
        q = norm.cdf(score)
        oriented = np.array([np.quantile(s["values"], q) for s in self.summaries])  # larger is better
        u = self.fidelity[self.levels, 0].astype(float)
        return float(-self.sign * ridge_line(u, oriented, np.ones_like(oriented))[0])

    def explain(self, candidate: int, predicted_score: float) -> str:
        """A short rationale: which cheap-fidelity trend the choice extrapolates, and what it
        predicts at the target."""
        p = self.problem
        if not self.levels:
            return f"No cheap runs to extrapolate from; predicted target score {predicted_score:+.2f}."
        names = [p.fidelities[lv].name for lv in self.levels]
        scores = ", ".join(f"{n} {m:+.2f}" for n, m in zip(names, self.smoothed[:, candidate], strict=True))
        value = self.predicted_value(predicted_score)
        trend, slope, gap = self.base[candidate, 2], self.base[candidate, 3], self.base[candidate, 4]
        text = f"Cheap runs near this configuration score {scores} (normal scores)"
        if self.cross_fidelity and len(self.levels) > 1:
            text += f"; the trend ({slope:+.2f} per 10x cost) extrapolates to {trend:+.2f} at {p.target}"
            text += f", {gap:.2f} from the extrapolated optimum"
        text += f". Predicted at the target: score {predicted_score:+.2f}"
        return text + (f", {p.objective.name} ~ {value:.4g}." if value is not None else ".")


def representative(level: np.ndarray, score: np.ndarray, cap: int) -> np.ndarray:
    """At most `cap` prior rows: per fidelity, an equal share spread evenly over its score ranks
    (its best run always in), the most expensive fidelities first when shares round down."""
    if len(level) <= cap:
        return np.arange(len(level))
    lvs = sorted(set(level.tolist()), reverse=True)
    share = max(1, cap // len(lvs))
    keep = []
    for lv in lvs[: cap // share]:
        rows = np.flatnonzero(level == lv)
        ranked = rows[np.argsort(-score[rows], kind="stable")]
        keep.extend(
            ranked[np.unique(np.linspace(0, len(ranked) - 1, min(share, len(ranked))).round().astype(int))]
        )
    return np.array(sorted(keep), dtype=int)
