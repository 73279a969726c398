"""`pretrain_hparams`: choose the peak learning rate and batch size, from Step Law's real grids.

Config: `lr` (peak learning rate, log scale) and `bs` (batch size in sequences of 2,048 tokens,
log scale). Each (N, D) cell keeps its own grid as measured (about 12 lr x 10 bs; the grids move
with the cell and 1.07B/56.9B holds only 5 learning rates): that configuration-space shift is part
of the problem, so nothing is regridded; a proposal is snapped to the nearest run of the cell.
Objective: the `smooth loss` column (final training loss, smoothed over the last steps), in
nats/token. Step Law defines each cell's optimum by this value; training is single-epoch, so the
training loss estimates held-out loss. The raw `loss` column is one step's batch loss: it differs
from the smoothed loss by 0.014 nats (median), as much as the gap between the best configurations,
and its argmin agrees with the smoothed one in only 2 of the 17 dense cells.
Divergence: a run is diverged when its loss is more than DIVERGED_GAP = 1.0 nats above the best run
of its cell (`diverged: {worse_than_best_by: 1.0}`); such runs are kept and scored as measured
(losses 4.2 to 11.1). The threshold was chosen on the train experiments only, from the gap of each
run to its cell's best over their 2161 distinct runs (each cell and configuration counted once):
2002 are within 0.54 nats of their cell's best (1979 within 0.3), none lies between 0.54 and 1.74,
and 159 are 1.74 to 7.99 nats above it (153 of them over 3.2, at losses of 5.7 to 10.3: runs that
blew up). 1.0 lies in that empty interval, about twice the largest normal gap (a batch of 2,048
sequences at 4B tokens: too few steps). No MoE train run is more than 0.29 above its cell's best.
Flagged: train experiments 949 table rows (159 distinct runs, 73 of them at train targets); test
experiments 484 rows (181 distinct runs, 22 at the test targets).

Fidelities: the (N, D) cells; descriptors `params` (N, non-embedding parameters; active
parameters Na for MoE) and `tokens` (D); cost 6*N*D FLOPs on one A100 at 312 TFLOP/s and 40% MFU
(`bench.gym.spec.flops_gpu_hours`).
Dense experiments (17 cells, five shapes h960/L7 ... h2048/L16, 214M/4B to 1.07B/56.9B): every
cell with at least 3 strictly cheaper cells is a target; its lower fidelities are the cells with
N <= N_t and D <= D_t (other than itself), so a prior never holds a larger model or more tokens.
That gives 12 experiments `dense-N<N>-D<D>`; rows of a cell are repeated in every experiment it
belongs to. `test`: the three most expensive cells by 6ND, 1.07B/56.9B, 537M/50B and 1.07B/20B
(the last is 0.04% above the 2.15e19 iso-FLOP cells 214M/100B, 268M/80B, 429M/50B, and is the
largest model). No test cell is a lower fidelity of a train experiment.
MoE experiments (`moe-<variant>-D20B`): the four MoE variants (1 of 89, 2 of 88, 1 of 8, 3 of 8
experts, all about 2.15B total parameters), each a 9 lr x 5 bs grid at D = 2/4/8/20B; fidelity is
D at the variant's active parameters, target 20B. `moe-3in8-D20B` (most active parameters, the
most expensive) is `test`. The MoE runs' measured `total_time` is not used for cost because the
repository does not state their hardware.

Shared runs: the dense experiments are rungs of each other. A cell's runs are rows of every dense
experiment whose target has at least its N and D: N215M-D4B is a rung of all 12, and the targets of
seven train experiments (N268M-D14.2B, N537M-D10B, N268M-D25B, N429M-D22.7B, N537M-D28.4B,
N429M-D40B, N429M-D50B) are rungs of the test experiments `dense-N1.07B-D56.9B` and
`dense-N537M-D50B` (the first two also of `dense-N1.07B-D20B`); no test target is a rung of a train
experiment. The four MoE experiments share no runs (one variant each).

Groups (`dense_groups`, declared in the spec; the table's sharing gives the same): dense experiments
whose targets are rungs of one another, transitively, are one group, named after its most expensive
experiment. The 11 nested dense experiments (all but `dense-N215M-D100B`) are group
`dense-N1.07B-D56.9B`. `dense-N215M-D100B` is a group of its own: no other experiment's target is
one of its cells and its target is no other experiment's cell; it shares with the group only the
rungs N215M-D4B, -D11.4B and -D20B, never a target run. Under `cv` an episode of a group experiment
is given those rungs as its prior anyway; a ladder distance g >= 3 withholds some of them from some
group experiments' priors (3 experiments at g = 3, all 11 at g = 30) while the fold that tests the
group trains on them. Each MoE experiment is a group. 6 groups, so 5 cross-validation folds: cv1of5
tests the 11 nested dense experiments (learned methods train on `dense-N215M-D100B` and the four
MoE), cv2of5 `dense-N215M-D100B` and `moe-3in8-D20B`, cv3of5 to cv5of5 one MoE each.
"""

from __future__ import annotations

import pandas as pd

from bench.data import path_of
from bench.gym.cache import cached_table
from bench.gym.spec import TaskSpec, build_task, si_format
from bench.gym.task import Experiment, Task, merge_groups

DENSE_FILE = "data/dense_lr_bs_loss.csv"
MOE_FILE = "data/moe_lr_bs_loss.csv"
OBJECTIVE = "smooth loss"
MIN_CHEAPER = 3  # a dense cell with at least this many strictly cheaper cells is a target
N_TEST = 3  # the most expensive dense targets are `test`
MOE_TARGET_TOKENS = 20e9
MOE_TEST = ["moe-3in8-D20B"]
DIVERGED_GAP = 1.0  # nats above the cell's best run (module docstring)
COLUMNS = ["experiment", "level", "params", "tokens", "lr", "bs", "smooth_loss"]


def cell_name(params: float, tokens: float) -> str:
    return f"N{si_format(params)}-D{si_format(tokens)}"


def cheaper_cells(cells: list[tuple[int, int]], target: tuple[int, int]) -> list[tuple[int, int]]:
    """Cells with no more parameters and no more tokens than `target`, other than itself."""
    return [c for c in cells if c != target and c[0] <= target[0] and c[1] <= target[1]]


def dense_targets(cells: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Cells with at least MIN_CHEAPER strictly cheaper cells, most expensive (N*D) first."""
    targets = [c for c in cells if len(cheaper_cells(cells, c)) >= MIN_CHEAPER]
    return sorted(targets, key=lambda c: -c[0] * c[1])


def dense_groups(cells: list[tuple[int, int]]) -> dict[str, list[str]]:
    """Dense experiments whose targets are rungs of one another, transitively, are one group,
    named after its most expensive experiment."""
    targets = dense_targets(cells)  # most expensive first
    name = {t: f"dense-{cell_name(*t)}" for t in targets}
    links = [(name[rung], name[t]) for t in targets for rung in cheaper_cells(targets, t)]
    merged = merge_groups({n: Experiment(n, "train", ()) for n in name.values()}, links)
    members: dict[str, list[str]] = {}
    for t in targets:
        members.setdefault(merged[name[t]].group, []).append(name[t])
    return {names[0]: names for names in members.values()}


def _dense() -> pd.DataFrame:
    raw = pd.read_csv(path_of("steplaw", DENSE_FILE))
    raw = raw.rename(columns={"N": "params", "D": "tokens", OBJECTIVE: "smooth_loss"})
    raw["level"] = [cell_name(n, d) for n, d in zip(raw.params, raw.tokens, strict=True)]
    cells = sorted(set(zip(raw.params, raw.tokens, strict=True)))
    frames = []
    for target in dense_targets(cells):
        members = {target, *cheaper_cells(cells, target)}
        rows = raw[[(n, d) in members for n, d in zip(raw.params, raw.tokens, strict=True)]]
        frames.append(rows.assign(experiment=f"dense-{cell_name(*target)}"))
    return pd.concat(frames, ignore_index=True)[COLUMNS]


def _moe() -> pd.DataFrame:
    raw = pd.read_csv(path_of("steplaw", MOE_FILE))
    raw = raw.rename(columns={"Na": "params", "D": "tokens", OBJECTIVE: "smooth_loss"})
    raw["level"] = [f"moe-{m}-D{si_format(d)}" for m, d in zip(raw.moe_name, raw.tokens, strict=True)]
    raw["experiment"] = [f"moe-{m}-D{si_format(MOE_TARGET_TOKENS)}" for m in raw.moe_name]
    order = raw.groupby("experiment").params.first().sort_values(ascending=False).index
    return pd.concat([raw[raw.experiment == e] for e in order], ignore_index=True)[COLUMNS]


def _table() -> pd.DataFrame:
    return pd.concat([_dense(), _moe()], ignore_index=True)


def load() -> Task:
    df = cached_table("pretrain_hparams", ["steplaw"], 1, _table)
    dense = [e for e in dict.fromkeys(df.experiment) if e.startswith("dense-")]
    rows = df[df.experiment.str.startswith("dense-")]
    cells = sorted(set(zip(rows.params, rows.tokens, strict=True)))
    spec = TaskSpec(
        name="pretrain_hparams",
        description=(
            "Choose the peak learning rate `lr` and the batch size `bs` (sequences of 2,048 "
            "tokens) for pretraining a language model of N parameters on D tokens, to minimise "
            "the final smoothed training loss. Smaller models and fewer tokens are cheap; the "
            "grid of configurations that was run differs from one (N, D) cell to the next."
        ),
        objective={"column": "smooth_loss", "direction": "minimize", "unit": "nats/token"},
        config=[{"name": "lr", "type": "float", "log": True},
                {"name": "bs", "type": "int", "log": True}],
        fidelity=["params", "tokens"],
        fidelity_label="level",
        experiment="experiment",
        test=[*dense[:N_TEST], *MOE_TEST],
        sources=["steplaw"],
        notes=__doc__,
        diverged={"worse_than_best_by": DIVERGED_GAP},
        groups=dense_groups(cells),
    )
    return build_task(spec, df)
