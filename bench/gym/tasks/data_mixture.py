"""`data_mixture`: choose the 17 Pile training-domain weights, from RegMix's real runs.

Fidelities (model size; tokens per the RegMix paper and repository README):
  1M params on 1B tokens: the 512 + 256 proxy runs; about 20 min on one A100 -> 0.33 GPU-hours.
  60M params on 1B tokens: the same 256 test mixtures retrained; 6ND = 3.6e17 FLOPs at the 1B
      run's effective throughput (below) -> 0.9 GPU-hours.
  1B params on 25B tokens: 64 other mixtures (the target); about 2 days on 8 A100s -> 384 GPU-hours.
Experiments: each of the 13 Pile validation losses. Fixed split: `pile_cc` (RegMix's default
target), `github` and `pubmed_central` are `test`; the other 10 `train`. RegMix's average of the
13 losses is not an experiment: it averages the test domains too, so as a train experiment it
would leak their target losses, and as a test one it is predictable from the train domains'
target losses (Spearman 0.97 with their mean over the 64 target mixtures).
Run ids restart between scales (1B files count from 0), so mixtures and losses are joined within
one scale only.

Shared runs: every experiment is a readout of the same runs. Each mixture was trained once per
scale and its model evaluated on all 13 domains, so the 13 experiments hold the same
configurations at every fidelity (target included) and differ only in the loss read out: a train
domain's target runs are the test domains' target runs, read on another domain.

Divergence: no rule; nothing on the train experiments looks like a blown-up run. Losses far above
their pool's best are common (up to 4.97 nats above it, arxiv at 1M), but they form a continuous
tail and follow the domain's own weight: per train pool (experiment x fidelity), the Spearman
correlation of loss with the weight of the experiment's own domain is -0.76 to -0.99 (median
-0.92), and 95 of the 100 runs that are the worst 1% of their pool give that domain no weight at
all. The largest step between consecutive sorted losses of a pool is 2.1 times the pool's
interquartile range (arxiv at 1B: 2.27 vs 2.00 nats, a mixture without arxiv); no pool shows a
gap separating a group of outliers. No loss is missing or infinite.

Groups: each domain is a group of its own, 13 groups, so 5 cross-validation folds (2 or 3 domains
each). The domains are readouts of the same runs, but a group holds experiments that share
outcomes (one's target runs, configuration and value, are rows of the other), and each domain
records another loss for each mixture: no experiment's target outcomes are rows of another's. The
fixed split already separates them so (train domains and test domains hold the same mixtures). The
readouts do disagree (measured on the 10 train domains only): over the 64 target mixtures, the
best mixture by the mean rank of the other 9 train domains ranks between 23rd and 59th of 64 on
each train domain (23, 25, 27, 35, 38, 42, 46, 51, 54, 59).
"""

from __future__ import annotations

import pandas as pd

from bench.data import path_of
from bench.gym.cache import cached_table
from bench.gym.spec import TaskSpec, build_task
from bench.gym.task import Task

TEST = ["pile_cc", "github", "pubmed_central"]
SCALES = {  # label: (params, tokens, GPU-hours per run, [(mixture file, loss file)])
    "1M": (1e6, 1e9, 20 / 60, [("train_mixture_1m", "train_pile_loss_1m"),
                               ("test_mixture_1m", "test_pile_loss_1m")]),
    "60M": (60e6, 1e9, 0.9, [("test_mixture_60m", "test_pile_loss_60m")]),
    "1B": (1e9, 25e9, 2 * 24 * 8, [("test_mixture_1B", "test_pile_loss_1B")]),
}
MIX_PREFIX, LOSS_PREFIX, LOSS_SUFFIX = "train_the_pile_", "metric/the_pile_", "_val_loss"


def _scale_rows(label: str, params: float, tokens: float, cost: float, files) -> pd.DataFrame:
    frames = []
    for mix_file, loss_file in files:
        mix = pd.read_csv(path_of("regmix", f"data/{mix_file}.csv"))
        loss = pd.read_csv(path_of("regmix", f"data/{loss_file}.csv"))
        frames.append(mix.merge(loss, on="index", validate="one_to_one"))
    wide = pd.concat(frames, ignore_index=True)
    weights = [c for c in wide.columns if c.startswith(MIX_PREFIX)]
    losses = [c for c in wide.columns if c.startswith(LOSS_PREFIX)]
    long = wide.melt(id_vars=weights, value_vars=losses, var_name="target",
                     value_name="loss")
    long["target"] = long["target"].str.removeprefix(LOSS_PREFIX).str.removesuffix(LOSS_SUFFIX)
    long = long.rename(columns={c: c.removeprefix(MIX_PREFIX) for c in weights})
    return long.assign(scale=label, params=params, tokens=tokens, gpu_hours=cost)


def _table() -> pd.DataFrame:
    return pd.concat([_scale_rows(k, *v) for k, v in SCALES.items()], ignore_index=True)


def load() -> Task:
    df = cached_table("data_mixture", ["regmix"], 2, _table)
    weights = [c for c in df.columns
               if c not in {"target", "loss", "scale", "params", "tokens", "gpu_hours"}]
    spec = TaskSpec(
        name="data_mixture",
        description=(
            "Choose the sampling weights of 17 Pile training domains (they sum to 1) for "
            "pretraining a language model, to minimise a validation loss. Small proxy models "
            "(1M, 60M params) are cheap; the target is a 1B model on 25B tokens."
        ),
        objective={"column": "loss", "direction": "minimize", "unit": "nats/token"},
        config=[{"name": w, "type": "float", "log": False} for w in weights],
        fidelity=["params", "tokens"],
        fidelity_label="scale",
        cost={"column": "gpu_hours"},
        experiment="target",
        test=TEST,
        sources=["regmix"],
        notes=__doc__,
    )
    return build_task(spec, df)
