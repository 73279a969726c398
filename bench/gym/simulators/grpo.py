"""A GRPO post-training outcome simulator, calibrated to real Qwen3 GSM8K GRPO runs.

No public table of GRPO hyperparameter outcomes exists, so this module simulates one. It maps a
configuration (7 hyperparameters, `PARAMS`), a model family, a benchmark and a model size to the
accuracy one run would score, with seed noise.

Calibration (source `rl_qwen3`: GRPO with verl on GSM8K, Qwen3 base models 0.6B-14B, one run per
size at the recipe `REF`: lr 1e-6, KL 1e-3, 3 rollouts per prompt, 512 prompts per step, 512-token
responses, about 56 steps):
- GSM8K: per size, the ScaleRL-form curve acc(s) = a0 + (top - a0) s^k / (s^k + mid^k) over steps s
  (FIGURES.md E.16 with compute -> steps; E.18's sigmoid) is least-squares fitted to the measured
  validation curve in `results/export.csv` (14-55 points per size); `top` is bounded by
  `GSM8K_CAP`, k by [1, 8]. This fixes base accuracy, reachable accuracy and the curve shape per size.
- MATH (the source scores its GSM8K-trained checkpoints on MATH, 5000 problems): base and trained
  0-shot accuracy per size from `results/<size>.json` (trained = mean over the GRPO checkpoints).
  The 14B base score (19.5, a strict-format failure: below the 8B's 44.6) is replaced by the 14B
  trained score minus the 8B's gain; generally, a base score below the next smaller size's is.
- Eval-set sizes (GSM8K 1319, MATH 5000) come from the same files; the fitted curves' residuals
  (0.4-1.4 points) match the binomial s.e. of a 1319-problem eval, so noise is modelled that way.

Model, per run. Every factor is a ratio to its value at `REF`, so at `REF` the simulator reproduces
the measured curve at `REF_STEPS` by construction; everything away from `REF` is an assumption,
each named by a constant below and chosen from FIGURES.md where it gives a number:
- Compute budget: each run gets the GPU-hours of `REF` for `REF_STEPS` steps, so a larger rollout
  batch, group or response length buys fewer steps (one cost per model size, `gpu_hours`).
- Progress x (in steps of `REF`) = steps * lr/1e-6 * signal/signal(REF). Signal = fraction of
  groups whose rewards differ (1 - p^G - (1-p)^G, p the mean pass rate, G shrunk at low
  temperature) * batch noise m/(m + `BATCH_NOISE`) (m = prompts x group) * untruncated fraction.
- Learning-rate landscape, in lr / lr*(N) with lr*(N) = lr*(14B) (N/14B)^-exponent per family.
  qwen3: lr*(14B) = 3e-6 and exponent 0.5 (muP's 1/width; Step Law's pretraining N^-0.71,
  FIGURES B.6, is the steeper reference), so lr* runs from 1.4e-5 at 0.6B to 3e-6 at 14B and the
  source's 1e-6 (E.19's typical value) is inside the stable range at every size; the source's
  training script notes that lr 1e-5 "follows a very similar shape" at its default 14B, close to
  the 14B cliff here (1.2e-5). Shape: a basin (Step Law: convex with a plateau) losing up to
  `BASIN_DEPTH` of the gain, a soft pre-divergence loss, and a divergence cliff at `CLIFF` x lr*
  (B.9: 2x the best lr is nearly as good, 4x diverges). Larger batches (less noise), smaller clip
  ranges, stronger KL and lower temperature move lr* and the cliff up, so a tiny KL with a high
  lr diverges where a larger KL would not.
- Reachable gain: larger rollout batches reach higher (ScaleRL, E.16); a clip range below
  `CLIP_STALL` collapses exploration (entropy collapse; a cliff); a KL coefficient anchors the
  policy to the base model (gain / (1 + kl/`KL_HALF`)); temperature away from the family's best.
- Divergence: a run diverges (accuracy `ACC_DIVERGED`) when log(lr / cliff) + `CLIFF_JITTER` z > 0,
  z ~ N(0, 1) per seed, so near a cliff some seeds diverge and others do not.
- Seed noise: training-seed variation of the RL gain (lognormal, sd `SEED_SD`, mean kept), then
  a binomial draw of the eval set (GSM8K 1319, MATH 5000 problems). `expected` is the noise-free
  surface (the mean over divergence draws); `sample` is one seeded run.
- GSM8K is scored at the training response limit (verl validates with the rollout settings):
  responses cut off there score 0; the result is capped softly at `GSM8K_CAP`.
- MATH accuracy of a GSM8K-trained run: base + measured MATH gain x (GSM8K gain / GSM8K gain at
  `REF`), scored at the source's fixed 1024-token eval length (so no truncation term).
Families: `qwen3` is the calibrated one; `llama` is a synthetic perturbation (weaker base, smaller
and slower gains, lower and faster-falling lr*, lower best temperature) so that experiments differ
in where the optimum sits; it is not calibrated to any measured Llama run.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass
from functools import cache

import numpy as np
import pandas as pd
from scipy.optimize import curve_fit
from scipy.special import hyp2f1, ndtr

from bench.data import path_of
from bench.errors import BenchError
from bench.gym.spec import A100_PEAK_FLOPS, DEFAULT_MFU

PARAMS = ("lr", "kl_coef", "group_size", "clip_range", "temperature", "rollout_batch",
          "max_response_len")
REF = {"lr": 1e-6, "kl_coef": 1e-3, "group_size": 3, "clip_range": 0.2, "temperature": 1.0,
       "rollout_batch": 512, "max_response_len": 512}  # the source's recipe
REF_STEPS = 56
SIZES = {"0.6B": 0.6e9, "1.7B": 1.7e9, "4B": 4e9, "8B": 8e9, "14B": 14e9}  # Qwen3 base models
BENCHMARKS = ("gsm8k", "math")
KL_OFF = 1e-5  # the smallest KL coefficient stands for "no KL term" (DAPO, Dr. GRPO use 0)

# Cost (A100 figures of bench.gym.spec): rollout decoding 2N FLOPs/token at ROLLOUT_MFU, paying
# TAIL_WAIT x the response limit per sample for the synchronous wait on the longest response;
# training 10N FLOPs/token (policy forward+backward 6N, old and reference log-probs 2N each).
PROMPT_TOKENS = 128
RESPONSE_SCALE = 180.0  # median GSM8K response of a trained policy, tokens; log-logistic, shape 4
TAIL_WAIT = 0.25
ROLLOUT_MFU = 0.10
TRAIN_FLOPS_PER_TOKEN = 10.0  # x params
# Progress and signal.
BATCH_NOISE = 256.0  # samples per step at which gradient noise halves the per-step progress
TEMP_DIVERSITY = 0.5  # temperature scale below which a group's samples become alike
# Learning-rate landscape.
CLIFF = 4.0  # divergence at CLIFF x the optimum lr
CLIFF_JITTER = 0.25  # seed-to-seed spread of log(cliff lr)
BASIN_DEPTH = 0.10  # share of the gain lost far from the optimum lr (inside the stable range)
BASIN_CURVATURE = 1.0  # per (log lr distance)^2
SOFT_LOSS = 0.5  # gain x exp(-SOFT_LOSS (lr/cliff)^4) just below the cliff
KL_STABILITY, KL_STABILITY_EXP = 2e-3, 0.35
CLIP_STABILITY_EXP = 0.5
TEMP_STABILITY = 1.0  # lr* x exp(-TEMP_STABILITY max(temperature - 1, 0))
# Reachable gain.
BATCH_HALF = 16.0  # prompts per step at which the reachable gain halves
CLIP_STALL = 0.08  # clip range below which updates stall (entropy collapse)
KL_HALF = 0.05  # KL coefficient that halves the reachable gain
TEMP_WIDTH = 0.6
# Outcomes.
GSM8K_CAP = 0.96  # bound on reachable GSM8K accuracy (assumption: label noise, best models)
ACC_DIVERGED = 0.01
SEED_SD = 0.04  # training-seed noise: relative sd of the RL gain


@dataclass(frozen=True)
class Family:
    """A model family: multipliers on the calibrated (qwen3) behaviour and its lr law."""

    name: str
    base: float = 1.0  # x base accuracy
    gain: float = 1.0  # x reachable RL gain
    speed: float = 1.0  # x progress per step
    lr_opt_14b: float = 3e-6  # optimum lr at 14B under the source recipe
    lr_exponent: float = 0.5  # optimum lr ~ params^-lr_exponent
    temperature: float = 1.0  # best sampling temperature


FAMILIES = {
    "qwen3": Family("qwen3"),
    "llama": Family("llama", base=0.6, gain=0.7, speed=0.8, lr_opt_14b=2e-6, lr_exponent=0.65,
                    temperature=0.8),
}


@dataclass(frozen=True)
class Curve:
    """Accuracy (fraction) after x steps of the source recipe: a0 + (top - a0) x^k / (x^k + mid^k)."""

    a0: float
    top: float
    mid: float
    k: float
    rmse: float = 0.0  # of the fit, in accuracy fraction

    def shape(self, x) -> np.ndarray:
        x = np.maximum(np.asarray(x, float), 0.0)
        return x**self.k / (x**self.k + self.mid**self.k)

    def __call__(self, x) -> np.ndarray:
        return self.a0 + (self.top - self.a0) * self.shape(x)


@dataclass(frozen=True)
class SizeCalibration:
    params: float
    gsm8k: Curve
    math_base: float  # fraction
    math_trained: float


@dataclass(frozen=True)
class Calibration:
    sizes: dict[str, SizeCalibration]
    eval_problems: dict[str, int]  # benchmark -> test-set size


def fit_curve(steps, accuracy) -> Curve:
    """Least-squares fit of the ScaleRL-form curve to one measured run (steps, accuracy fraction)."""
    s, y = np.asarray(steps, float), np.asarray(accuracy, float)

    def f(s, a0, top, mid, k):
        return Curve(a0, top, mid, k)(s)

    p0 = [y[0], min(y[-1], GSM8K_CAP - 1e-3), 10.0, 1.5]
    p, _ = curve_fit(f, s, y, p0=p0, bounds=([0, 0, 0.5, 1.0], [1, GSM8K_CAP, 200, 8]))
    rmse = float(np.sqrt(np.mean((y - f(s, *p)) ** 2)))
    return Curve(*map(float, p), rmse=rmse)


def _json_accuracy(models: list[dict], benchmark: str, trained: bool) -> tuple[list[float], int]:
    """0-shot accuracies (fractions) of the base or GRPO-trained entries, and the test-set size."""
    accs, total = [], 0
    for m in models:
        if ("checkpoint" in m.get("metadata", {})) != trained:
            continue
        zero = m["benchmarks"].get(benchmark, {}).get("by_shot", {}).get("0")
        if zero and "accuracy" in zero:
            accs.append(zero["accuracy"] / 100.0)
            total = zero["total"]
    return accs, total


@cache
def calibrate() -> Calibration:
    """Fit the per-size calibration from the `rl_qwen3` files (read through the data mirror/cache)."""
    curves = pd.read_csv(path_of("rl_qwen3", "results/export.csv"))
    sizes, problems = {}, {}
    prev = None
    for label, params in SIZES.items():
        run = curves[["Step", label.lower()]].dropna()
        models = json.loads(path_of("rl_qwen3", f"results/{label.lower()}.json").read_text())["models"]
        base, problems["math"] = _json_accuracy(models, "math", trained=False)
        trained, _ = _json_accuracy(models, "math", trained=True)
        _, problems["gsm8k"] = _json_accuracy(models, "gsm8k", trained=False)
        math_base, math_trained = base[0], float(np.mean(trained))
        if prev is not None and math_base < prev.math_base:  # a format failure of the base model
            math_base = math_trained - (prev.math_trained - prev.math_base)
        prev = SizeCalibration(params, fit_curve(run["Step"], run[label.lower()]), math_base,
                               math_trained)
        sizes[label] = prev
    return Calibration(sizes, problems)


# Response lengths: log-logistic with median RESPONSE_SCALE and shape 4.
def truncated_share(limit) -> np.ndarray:
    """Share of responses longer than `limit` tokens (cut off, scored wrong)."""
    return 1.0 / (1.0 + (np.asarray(limit, float) / RESPONSE_SCALE) ** 4)


def mean_response(limit) -> np.ndarray:
    """Mean generated tokens per response under a `limit`: E[min(length, limit)]."""
    z = np.asarray(limit, float) / RESPONSE_SCALE
    return RESPONSE_SCALE * z * hyp2f1(1.0, 0.25, 1.25, -(z**4))


def sample_flops_per_param(limit) -> np.ndarray:
    """Peak-equivalent FLOPs per model parameter to roll out and train on one response."""
    tokens = PROMPT_TOKENS + mean_response(limit)
    rollout = 2.0 * (tokens + TAIL_WAIT * np.asarray(limit, float)) / ROLLOUT_MFU
    return rollout + TRAIN_FLOPS_PER_TOKEN * tokens / DEFAULT_MFU


def gpu_hours(size: str) -> float:
    """A100 GPU-hours of one run at `size`: `REF_STEPS` steps of the source recipe."""
    per_step = REF["rollout_batch"] * REF["group_size"] * sample_flops_per_param(REF["max_response_len"])
    return float(REF_STEPS * per_step * SIZES[size] / A100_PEAK_FLOPS / 3600.0)


def _softmin(a, cap: float, sharpness: float = 0.01):
    """min(a, cap), smoothed over about `sharpness` (accuracy fraction) below the cap."""
    return -sharpness * np.logaddexp(-a / sharpness, -cap / sharpness)


class GRPOSimulator:
    """Accuracy (points) of GRPO runs: the noise-free surface and seeded single runs."""

    def __init__(self, calibration: Calibration | None = None):
        self.calibration = calibration or calibrate()

    def expected(self, configs, family: str, benchmark: str, size: str) -> np.ndarray:
        """Mean accuracy over seeds (points): the noise-free landscape, cliffs included."""
        acc, _, log_cliff = self._surface(configs, family, benchmark, size)
        p_div = ndtr(log_cliff / CLIFF_JITTER)
        return 100.0 * ((1.0 - p_div) * acc + p_div * ACC_DIVERGED)

    def sample(self, configs, family: str, benchmark: str, size: str, seed: int) -> np.ndarray:
        """One run per configuration (points); the same seed gives the same numbers."""
        if int(seed) < 0:
            raise BenchError(f"a simulator seed must be a non-negative integer, not {seed}")
        acc, untrained, log_cliff = self._surface(configs, family, benchmark, size)
        key = zlib.crc32(f"{family}/{benchmark}/{size}".encode())
        rng = np.random.default_rng([int(seed), key])
        z_div, z_seed = rng.standard_normal(len(acc)), rng.standard_normal(len(acc))
        run = untrained + (acc - untrained) * np.exp(SEED_SD * z_seed - SEED_SD**2 / 2)
        run = np.where(log_cliff + CLIFF_JITTER * z_div > 0, ACC_DIVERGED, np.clip(run, 0.0, 1.0))
        n = self.calibration.eval_problems[benchmark]
        return 100.0 * rng.binomial(n, run) / n

    def lr_optimum(self, family: str, size: str) -> float:
        """lr* of the source recipe at `size` (the centre of the lr basin, a quarter of the cliff)."""
        fam = _family(family)
        return fam.lr_opt_14b * (SIZES[size] / SIZES["14B"]) ** -fam.lr_exponent

    # --- the model ------------------------------------------------------------------------------
    def _surface(self, configs, family: str, benchmark: str, size: str):
        """Accuracy (fraction) if the run does not diverge, that of the untrained model under the
        same eval, and log(lr / cliff lr)."""
        fam = _family(family)
        if benchmark not in BENCHMARKS:
            raise BenchError(f"unknown GRPO benchmark {benchmark!r}; known: {', '.join(BENCHMARKS)}")
        if size not in SIZES:
            raise BenchError(f"unknown model size {size!r}; known: {', '.join(SIZES)}")
        cal = self.calibration.sizes[size]
        c, ref = _columns(configs), _columns([REF])
        a0 = cal.gsm8k.a0 * fam.base
        gain_top = (cal.gsm8k.top - cal.gsm8k.a0) * fam.gain
        pass_rate = a0 + gain_top / 2.0
        lr_opt = self.lr_optimum(family, size)

        x = REF_STEPS * fam.speed * self._progress(c, pass_rate) / self._progress(ref, pass_rate)
        quality = self._quality(c, fam, lr_opt) / self._quality(ref, fam, lr_opt)
        gain = gain_top * cal.gsm8k.shape(x) * quality
        log_cliff = np.log(c["lr"] / (CLIFF * lr_opt * self._lr_shift(c)))
        if benchmark == "gsm8k":
            kept = (1.0 - truncated_share(c["max_response_len"])) / (
                1.0 - truncated_share(REF["max_response_len"]))
            return _softmin((a0 + gain) * kept, GSM8K_CAP), a0 * kept, log_cliff
        gain_ref = gain_top * cal.gsm8k.shape(REF_STEPS * fam.speed)
        m0 = cal.math_base * fam.base
        m_gain = (cal.math_trained - cal.math_base) * fam.gain
        return np.clip(m0 + m_gain * gain / gain_ref, 0.0, 1.0), np.full_like(gain, m0), log_cliff

    @staticmethod
    def _progress(c, pass_rate: float) -> np.ndarray:
        """Progress per run up to a constant: steps afforded x lr x useful signal per step."""
        samples = c["rollout_batch"] * c["group_size"]
        steps = 1.0 / (samples * sample_flops_per_param(c["max_response_len"]))
        group = 1.0 + (c["group_size"] - 1.0) * (1.0 - np.exp(-((c["temperature"] / TEMP_DIVERSITY) ** 2)))
        informative = 1.0 - pass_rate**group - (1.0 - pass_rate) ** group
        signal = informative * samples / (samples + BATCH_NOISE)
        return steps * c["lr"] * signal * (1.0 - truncated_share(c["max_response_len"]))

    @staticmethod
    def _lr_shift(c) -> np.ndarray:
        """Factor on lr* (and the cliff) from batch noise, clip range, KL and temperature; 1 at REF."""
        def noise(c):
            m = c["rollout_batch"] * c["group_size"]
            return m / (m + BATCH_NOISE)

        ref = _columns([REF])
        batch = np.sqrt(noise(c) / noise(ref))
        clip = (REF["clip_range"] / c["clip_range"]) ** CLIP_STABILITY_EXP
        kl = ((1 + c["kl_coef"] / KL_STABILITY) / (1 + REF["kl_coef"] / KL_STABILITY)) ** KL_STABILITY_EXP
        temp = np.exp(-TEMP_STABILITY * np.maximum(c["temperature"] - 1.0, 0.0))
        return batch * clip * kl * temp

    def _quality(self, c, fam: Family, lr_opt: float) -> np.ndarray:
        """Share of the reachable gain a configuration keeps, up to a constant."""
        opt = lr_opt * self._lr_shift(c)
        dist = np.log(c["lr"] / opt)
        basin = 1.0 - BASIN_DEPTH * (1.0 - np.exp(-BASIN_CURVATURE * dist**2))
        soft = np.exp(-SOFT_LOSS * (c["lr"] / (CLIFF * opt)) ** 4)
        batch = c["rollout_batch"] / (c["rollout_batch"] + BATCH_HALF)
        clip = 1.0 / (1.0 + (CLIP_STALL / c["clip_range"]) ** 4)
        kl = 1.0 / (1.0 + c["kl_coef"] / KL_HALF)
        temp = np.exp(-(((c["temperature"] - fam.temperature) / TEMP_WIDTH) ** 2))
        return basin * soft * batch * clip * kl * temp


def _family(name: str) -> Family:
    try:
        return FAMILIES[name]
    except KeyError:
        raise BenchError(f"unknown GRPO model family {name!r}; known: {', '.join(FAMILIES)}") from None


def _columns(configs) -> dict[str, np.ndarray]:
    """Configurations (a DataFrame or a list of mappings) -> one float array per parameter."""
    df = configs if isinstance(configs, pd.DataFrame) else pd.DataFrame(list(configs))
    missing = [p for p in PARAMS if p not in df.columns]
    if missing:
        raise BenchError(f"GRPO configurations need {list(PARAMS)}; missing {missing}")
    cols = {p: df[p].to_numpy(float) for p in PARAMS}
    bad = [p for p, v in cols.items() if not np.all(np.isfinite(v) & (v > 0))]
    if bad:
        raise BenchError(f"GRPO configuration values must be positive numbers; check {bad}")
    return cols


__all__ = ["BENCHMARKS", "FAMILIES", "KL_OFF", "PARAMS", "REF", "SIZES", "Calibration", "Curve",
           "GRPOSimulator", "calibrate", "fit_curve", "gpu_hours"]
