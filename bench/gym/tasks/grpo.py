"""`grpo` (SIMULATED): GRPO post-training hyperparameters for math reasoning.

No public table of GRPO hyperparameter outcomes exists; the outcomes come from the calibrated
simulator `bench.gym.simulators.grpo` (its docstring states the calibration to the real Qwen3
GSM8K GRPO runs of `rl_qwen3` and every assumption). Every output of this task is marked simulated.

Config (7): lr (log, 1e-7..1e-4), kl_coef (log, 1e-5..1e-1; 1e-5 stands for "no KL term"),
  group_size (rollouts per prompt, log int, 2..64), clip_range (0.05..0.4), temperature
  (0.4..1.4), rollout_batch (prompts per step, log int, 32..1024), max_response_len (log int,
  256..4096 tokens).
Fidelities: model size, 0.6B / 1.7B / 4B / 8B / 14B (descriptor `params`); the 14B is the target.
  Every run gets the compute of the source recipe for 56 steps (larger batches, groups or
  responses buy fewer steps), so a size has one cost: rollout (2N FLOPs/token at 10% MFU, plus a
  wait on the longest response) + training (10N FLOPs/token at 40% MFU) on A100s, about 0.8,
  2.2, 5.3, 10.5 and 18.4 GPU-hours.
Experiments: family x benchmark. `qwen3-*` is calibrated to the Qwen3 runs; `llama-*` is a
  synthetic perturbation (weaker base, smaller gains, lower optimum lr). `*-gsm8k` scores GSM8K
  (1319 problems); `*-math` scores MATH (5000 problems) of the same GSM8K-trained policy, as the
  source measured. Fixed split: `qwen3-gsm8k` and `llama-gsm8k` are `test`; the two `*-math`
  experiments are `train` (same training dynamics, a different readout: learned methods can
  transfer from them; their own gains, about 2 points at 14B, are too close to the noise to make
  good test problems).
Pools: per (experiment, size) 256 configurations of a scrambled Sobol design (its own seed per
  size, shared by the experiments: a fresh sweep at each size; discrete levels for the integer
  parameters, 20% of the KL values at the "no KL" floor), plus, at the cheap sizes only, the
  source recipe with lr swept over 13 values (4 per decade), each with one simulated run (table
  seed 0). The target (14B) pool has no recipe sweep: it would hold the target's optimum lr. Each
  test experiment's target pool is a Sobol design of its own (TEST_DESIGN_SEED and its index in
  TEST), not the design the train experiments hold at 14B: a method trained on the train
  experiments' target runs has seen none of the test target candidates.
  Built in memory on load (a fraction of a second), so a change to the simulator can never be
  hidden by a stale cache.

Shared runs: at the cheap sizes `<family>-gsm8k` and `<family>-math` are two readouts (GSM8K,
  MATH) of the same simulated runs: the same configurations and training, another eval set. The
  simulator draws each readout's seed noise and divergence on its own, so the two readouts of a
  run near a cliff can disagree on whether it diverged (a simplification). At the target the
  gsm8k experiments have pools of their own, so no target run is shared. The two families share
  configurations (one design per size), not runs: they are different base models.
Divergence: a run is diverged when its accuracy is below DIVERGED_BELOW = 2.5 points
  (`diverged: {worse_than: 2.5}`). The simulator scores a diverged run at ACC_DIVERGED = 1% of
  the eval set, drawn binomially: 1.0 +- 0.27 points on GSM8K (1319 problems), +- 0.14 on MATH
  (5000); a diverged run scores 2.5 or more with probability 3e-6 on GSM8K and 2e-19 on MATH. A
  finished run scores about its base model's accuracy or more; on the train (MATH) experiments
  the lowest finished run scores 13.9 points. Only the 0.6B llama model on GSM8K, whose base
  accuracy with responses cut at 256 tokens is 2.45 points, has finished runs below 2.5; they are
  flagged, being no better than a diverged run (6 runs). Flagged: train 552 of 2664 table runs
  (164 of 512 at the target), test 569 of 2664 (163 of 512 at the target); every run the
  simulator diverged is flagged.

Groups: each experiment is a group of its own, 4 groups, so 4 cross-validation folds (leave one
experiment out). The `*-gsm8k` and `*-math` readouts of a family share configurations and
training but not outcomes (another eval set), and no target run is shared. Under `cv` the folds
of the `*-math` experiments train on the other family's math experiment, whose target candidates
are the same 256 configurations (one design per size) with another base model's outcomes
(Spearman 0.72 at 14B): the fixed split's rule that no test target candidate is trained on holds
for the `*-gsm8k` folds only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import qmc

from bench.gym.simulators import grpo as sim
from bench.gym.spec import TaskSpec, build_task
from bench.gym.task import Task

TEST = ["qwen3-gsm8k", "llama-gsm8k"]
DESIGN_POINTS = 256  # a power of two, as Sobol designs want
DESIGN_SEED = 20250917
TEST_DESIGN_SEED = 20260521  # the test experiments' target designs
TABLE_SEED = 0
LR_SWEEP = np.logspace(-7, -4, 13)
KL_OFF_SHARE = 0.2
DIVERGED_BELOW = 2.5  # accuracy points; a diverged run scores 1.0 +- 0.27 (module docstring)


def design(size_index: int, stream: int = 0) -> pd.DataFrame:
    """The Sobol part of the pool at one model size (deterministic): the design the experiments
    share (`stream` 0) or the target design of the test experiment TEST[stream - 1]."""
    seed = [DESIGN_SEED, size_index] if stream == 0 else [TEST_DESIGN_SEED, size_index, stream]
    sobol = qmc.Sobol(d=len(sim.PARAMS), scramble=True, rng=np.random.default_rng(seed))
    u = sobol.random(DESIGN_POINTS)

    def levels(col: np.ndarray, lo: int, n: int) -> np.ndarray:  # powers of two 2^lo .. 2^(lo+n-1)
        return (2 ** (lo + np.minimum(np.floor(col * n), n - 1))).astype(int)

    kl_on = (u[:, 1] - KL_OFF_SHARE) / (1 - KL_OFF_SHARE)
    return pd.DataFrame({
        "lr": 10 ** (-7 + 3 * u[:, 0]),
        "kl_coef": np.where(u[:, 1] < KL_OFF_SHARE, sim.KL_OFF, 10 ** (-4 + 3 * kl_on)),
        "group_size": levels(u[:, 2], 1, 6),
        "clip_range": 0.05 + 0.35 * u[:, 3],
        "temperature": 0.4 + 1.0 * u[:, 4],
        "rollout_batch": levels(u[:, 5], 5, 6),
        "max_response_len": levels(u[:, 6], 8, 5),
    })


def pool(size_index: int, experiment: str | None = None) -> pd.DataFrame:
    """All configurations run at one model size: its own Sobol design, plus the recipe's lr sweep
    at the cheap sizes only (a sweep at the target would hold the target's optimum lr, and a
    researcher does not get to run it there for free). A test `experiment` has a target design
    of its own."""
    if size_index == len(sim.SIZES) - 1:
        stream = 1 + TEST.index(experiment) if experiment in TEST else 0
        return design(size_index, stream)[list(sim.PARAMS)]
    sweep = pd.DataFrame([{**sim.REF, "lr": lr} for lr in LR_SWEEP])
    return pd.concat([design(size_index), sweep], ignore_index=True)[list(sim.PARAMS)]


def _table() -> pd.DataFrame:
    simulator = sim.GRPOSimulator()
    frames = []
    for i, (size, params) in enumerate(sim.SIZES.items()):
        for family in sim.FAMILIES:
            for benchmark in sim.BENCHMARKS:
                configs = pool(i, f"{family}-{benchmark}")
                frames.append(configs.assign(
                    experiment=f"{family}-{benchmark}", size=size, params=params,
                    gpu_hours=sim.gpu_hours(size),
                    accuracy=simulator.sample(configs, family, benchmark, size, seed=TABLE_SEED)))
    return pd.concat(frames, ignore_index=True)


def load() -> Task:
    spec = TaskSpec(
        name="grpo",
        description=(
            "SIMULATED task (calibrated simulator, not measured runs). Choose the GRPO "
            "post-training hyperparameters (learning rate, KL coefficient, group size, clip range, "
            "sampling temperature, prompts per step, max response length) of a base language "
            "model trained with RL on GSM8K, to maximise test accuracy. Every run gets the same "
            "compute per model size; the cheap fidelities are smaller models (0.6B-8B), the "
            "target a 14B model. Experiments `<family>-gsm8k` score GSM8K; `<family>-math` score "
            "MATH with the same GSM8K-trained policy."
        ),
        objective={"column": "accuracy", "direction": "maximize", "unit": "points, simulated"},
        config=[
            {"name": "lr", "type": "float", "log": True},
            {"name": "kl_coef", "type": "float", "log": True},
            {"name": "group_size", "type": "int", "log": True},
            {"name": "clip_range", "type": "float", "log": False},
            {"name": "temperature", "type": "float", "log": False},
            {"name": "rollout_batch", "type": "int", "log": True},
            {"name": "max_response_len", "type": "int", "log": True},
        ],
        fidelity=["params"],
        fidelity_label="size",
        cost={"column": "gpu_hours"},
        experiment="experiment",
        test=TEST,
        sources=["rl_qwen3"],
        simulated=True,
        notes=__doc__,
        diverged={"worse_than": DIVERGED_BELOW},
    )
    return build_task(spec, _table())
