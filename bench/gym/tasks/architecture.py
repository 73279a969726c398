"""`architecture`: choose a model's width x depth for a compute budget, from the Gemstones runs.

Config: `width` and `depth` (log scale); the candidates are the 22 shapes Gemstones trained (widths
256-3072, depths 3-80, 48M-2.0B parameters N, embeddings included), each for 350B tokens with a
constant learning rate after warm-up ("hot" runs), checkpoints every 2B tokens.
Outcome of a shape at budget C: its own measured loss after tokens = C / (6N), interpolated
linearly in log(tokens) between the two neighbouring checkpoints. Nothing is extrapolated: a shape
whose first checkpoint already exceeds C/(6N), or whose last (350B) falls short of it, is absent at
that budget, so small shapes drop out of large budgets and large shapes out of small ones. A level
with fewer than 3 shapes present is dropped. The loss of a hot checkpoint stands for a run trained
to that point (no cooldown), as in the Gemstones analysis.
Objectives (one experiment group each, all in nats/token): `train_loss` (training loss, the
checkpoint file `wandb_dfs/wandb_df_for_fitting_hot_100b+_477.jsonl`), `fineweb_edu` and `dclm`
(validation loss on FineWeb-Edu / DCLM, `benchmarks/*.jsonl`, checkpoints every 10B tokens from
10B, so they start at a larger budget).
Fidelities: compute budgets C = 10^18.5, 10^19, ..., 10^21 FLOPs (descriptor `flops`). Cost:
GPU-hours of a run, from the measured `seconds_per_step` and `num_nodes` with 8 GPUs per Frontier
node (4 AMD MI250X, 2 GCDs each; the factor the Gemstones code uses for its GPU-hours), 4,194,304
tokens per step: hours = steps x seconds_per_step x nodes x 8 / 3600, the median over the shapes
that reach the level. Units are MI250X-GCD hours, not A100 hours.
Experiments `<objective>-C1e<exponent>`: targets 10^20, 10^20.5 and 10^21, each with every cheaper
level; the 10^21 ones are `test` (no train experiment holds that level).

`architecture_wallclock` is the same choice with a wall-clock budget on the run's own hardware:
a shape given H hours reaches tokens = H x 3600 / seconds_per_step x 4,194,304 (larger shapes
ran on more nodes). Fidelities H = 1, 2, 4, 8, 16, 32 hours (descriptor `hours`); cost H x nodes
x 8 GPU-hours, the median over the shapes that reach the level; targets 8, 16, 32 hours, the
32-hour ones `test`.
Shared runs: all experiments of a task are readouts of the same 22 training runs. The three
objectives read the same checkpoints (training loss, FineWeb-Edu and DCLM validation loss), and
within an objective a level's rows are repeated in every experiment whose target is at or above
it: the train targets C1e20 and C1e20.5 are rungs of the experiments above them (C1e20.5, and the
test C1e21), every cheaper level present is a rung of all three; likewise 8h and 16h in
`architecture_wallclock`.

Divergence: no rule; no train run looks blown up. Per train pool (objective x level), the largest
loss above the pool's best is 0.75 nats and the largest step between consecutive sorted losses is
1.85 times the pool's interquartile range (0.32 nats): both at C1e19.5 on training loss, where the
three ~2B-parameter shapes (3072x12, 1536x50, 2048x27) have seen only 2.6-2.8B tokens, early in
their runs. `architecture_wallclock`: at most 0.84 nats above the best, steps at most 0.57 IQR.
Losses are interpolated from checkpoints; none is missing or infinite.

Not included: the Scaling-with-Vocab runs. Their decision is the vocabulary size, not width x
depth, of other models on other data, with a unigram-normalised loss on another scale, so they fit
neither this search space nor this objective.

Groups: one, of every experiment. Within an objective each target level is a rung of the
experiments above it; across objectives the experiments are readouts of the same runs that are
near-copies of one another: the objectives rank the shapes almost alike (measured on the train
levels C1e20 and C1e20.5 only: Spearman 0.95 to 1.0 between two objectives' target runs, the same
best shape at both; 8h and 16h of `architecture_wallclock`: 0.997 to 1.0, the same best), so a
method trained on one objective's runs would know the others' answers. The task is therefore a
single group: under `cv` every experiment is scored, by non-learned methods only (no fold leaves
anything to train on); the fixed `paper` split, which keeps every C1e21 (32h) run out of training,
is where learned methods are read on it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from bench.data import path_of
from bench.gym.cache import cached_table
from bench.gym.spec import TaskSpec, build_task
from bench.gym.task import Task

TRAIN_FILE = "wandb_dfs/wandb_df_for_fitting_hot_100b+_477.jsonl"
CURVE_FILES = {
    "train_loss": TRAIN_FILE,
    "fineweb_edu": "benchmarks/fineweb_edu_losses_combined.jsonl",
    "dclm": "benchmarks/fineweb_dclm_losses_combined.jsonl",
}
GPUS_PER_NODE = 8
TOKENS_PER_STEP = 2048 * 2048  # global batch of 2,048 sequences of 2,048 tokens
MIN_SHAPES = 3
COMPUTE_EXPONENTS = (18.5, 19.0, 19.5, 20.0, 20.5, 21.0)
COMPUTE_TARGETS = (20.0, 20.5, 21.0)
HOURS = (1, 2, 4, 8, 16, 32)
HOUR_TARGETS = (8, 16, 32)


@dataclass(frozen=True)
class Shape:
    """One trained shape's size and measured hardware."""

    params: float
    nodes: int
    seconds_per_step: float


@dataclass(frozen=True)
class Level:
    """A budget: `value` FLOPs (kind `flops`) or wall-clock hours on the shape's nodes (`hours`)."""

    name: str
    value: float
    kind: Literal["flops", "hours"]

    def tokens(self, shape: Shape) -> float:
        """Tokens `shape` trains on within this budget."""
        if self.kind == "flops":
            return self.value / (6.0 * shape.params)
        return self.value * 3600.0 / shape.seconds_per_step * TOKENS_PER_STEP

    def gpu_hours(self, shape: Shape) -> float:
        """GPU-hours of that run, from the shape's measured step time and node count."""
        steps = self.tokens(shape) / TOKENS_PER_STEP
        return steps * shape.seconds_per_step * shape.nodes * GPUS_PER_NODE / 3600.0


COMPUTE_LEVELS = [Level(f"C1e{e:g}", 10.0**e, "flops") for e in COMPUTE_EXPONENTS]
HOUR_LEVELS = [Level(f"{h}h", float(h), "hours") for h in HOURS]


def loss_at(tokens: float, curve_tokens: ArrayLike, curve_loss: ArrayLike) -> float | None:
    """Loss after `tokens`, linear in log(tokens) between checkpoints (tokens ascending);
    None outside the measured range."""
    curve_tokens = np.asarray(curve_tokens, float)
    if not curve_tokens[0] <= tokens <= curve_tokens[-1]:
        return None
    return float(np.interp(np.log(tokens), np.log(curve_tokens), curve_loss))


def _records(path: str) -> pd.DataFrame:
    with path_of("gemstones", path).open() as fh:
        return pd.DataFrame([json.loads(line) for line in fh if line.strip()])


def shapes() -> dict[tuple[int, int], Shape]:
    """The 22 shapes with their measured hardware, keyed by (width, depth)."""
    runs = _records(TRAIN_FILE).groupby(["width", "depth"]).first()
    return {(int(w), int(d)): Shape(float(r.params_active_precise), int(r.num_nodes),
                                    float(r.seconds_per_step))
            for (w, d), r in runs.iterrows()}


def curves(objective: str) -> dict[tuple[int, int], tuple[np.ndarray, np.ndarray]]:
    """(width, depth) -> (checkpoint tokens, loss), sorted by tokens, for one objective."""
    df = _records(CURVE_FILES[objective]).sort_values("tokens")
    return {(int(w), int(d)): (g.tokens.to_numpy(float), g.final_loss.to_numpy(float))
            for (w, d), g in df.groupby(["width", "depth"])}


def _table(levels: list[Level], targets: list[str]) -> pd.DataFrame:
    """Long table: one row per (experiment, level, shape present), levels cheapest first."""
    hardware = shapes()
    by_objective = {o: curves(o) for o in CURVE_FILES}
    cost = {  # median GPU-hours over the shapes whose training curve reaches the level
        lv.name: float(np.median([lv.gpu_hours(s) for k, s in hardware.items()
                                  if loss_at(lv.tokens(s), *by_objective["train_loss"][k])
                                  is not None]))
        for lv in levels
    }
    frames = []
    for objective, shape_curves in by_objective.items():
        per_level = {}
        for lv in levels:
            rows = [{"level": lv.name, lv.kind: lv.value, "gpu_hours": cost[lv.name],
                     "width": w, "depth": d, "loss": loss}
                    for (w, d), curve in shape_curves.items()
                    if (loss := loss_at(lv.tokens(hardware[w, d]), *curve)) is not None]
            if len(rows) >= MIN_SHAPES:
                per_level[lv.name] = pd.DataFrame(rows)
        names = list(per_level)
        for target in targets:
            upto = [per_level[n] for n in names[: names.index(target) + 1]]
            frames.append(pd.concat(upto, ignore_index=True).assign(experiment=f"{objective}-{target}"))
    return pd.concat(frames, ignore_index=True)


def _task(name: str, df: pd.DataFrame, descriptor: str, test_level: str, budget_words: str) -> Task:
    spec = TaskSpec(
        name=name,
        description=(
            "Choose the width (hidden size) and depth (number of layers) of a decoder-only "
            f"transformer, among 22 trained shapes, to minimise its loss {budget_words}: a larger "
            "model sees fewer tokens. Small budgets are cheap; the objective is training loss or "
            "validation loss on FineWeb-Edu or DCLM (see the experiment name)."
        ),
        objective={"column": "loss", "direction": "minimize", "unit": "nats/token"},
        config=[{"name": "width", "type": "int", "log": True},
                {"name": "depth", "type": "int", "log": True}],
        fidelity=[descriptor],
        fidelity_label="level",
        cost={"column": "gpu_hours"},
        experiment="experiment",
        test=[f"{o}-{test_level}" for o in CURVE_FILES],
        groups={name: sorted(set(df.experiment))},  # readouts of the same runs, near-copies (above)
        sources=["gemstones"],
        notes=__doc__,
    )
    return build_task(spec, df)


def load() -> Task:
    targets = [f"C1e{e:g}" for e in COMPUTE_TARGETS]
    df = cached_table("architecture", ["gemstones"], 1,
                      lambda: _table(COMPUTE_LEVELS, targets))
    return _task("architecture", df, "flops", targets[-1], "at a fixed training compute C (FLOPs)")


def load_wallclock() -> Task:
    targets = [f"{h}h" for h in HOUR_TARGETS]
    df = cached_table("architecture_wallclock", ["gemstones"], 1,
                      lambda: _table(HOUR_LEVELS, targets))
    return _task("architecture_wallclock", df, "hours", targets[-1],
                 "after a fixed number of wall-clock hours on the hardware each shape ran on")
