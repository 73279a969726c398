"""`architecture` / `architecture_wallclock` on Gemstones: rows, interpolation, absence, costs, runs."""

import json
import math
import statistics

import pytest

from bench.data import path_of
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.tasks.architecture import loss_at
from tests.helpers import check_quick_suite

TRAIN = "wandb_dfs/wandb_df_for_fitting_hot_100b+_477.jsonl"
DCLM = "benchmarks/fineweb_dclm_losses_combined.jsonl"


def _records(path):
    with path_of("gemstones", path).open() as fh:
        return [json.loads(line) for line in fh]


def _checkpoint(records, width, depth, step):
    (r,) = [r for r in records if (r["width"], r["depth"], r["step"]) == (width, depth, step)]
    return r["tokens"], r["final_loss"]


def _by_hand(t, lo, hi):
    """Linear in log tokens between checkpoints lo = (tokens, loss) and hi."""
    return lo[1] + (hi[1] - lo[1]) * (math.log(t) - math.log(lo[0])) / (math.log(hi[0]) - math.log(lo[0]))


def _value(task, experiment, level, width, depth):
    pool = task.outcomes(experiment, level)
    (v,) = pool.value[(pool.width == width) & (pool.depth == depth)]
    return v


@pytest.fixture(scope="module")
def arch():
    return load_task("architecture")


@pytest.fixture(scope="module")
def wall():
    return load_task("architecture_wallclock")


@pytest.fixture(scope="module")
def train_records():
    return _records(TRAIN)


def test_row_counts_match_the_raw_files(arch, train_records):
    assert len(train_records) == 22 * 175
    params = {(r["width"], r["depth"]): r["params_active_precise"] for r in train_records}
    expected = 0
    for name in (TRAIN, DCLM, "benchmarks/fineweb_edu_losses_combined.jsonl"):
        spans = {}
        for r in _records(name):
            lo, hi = spans.get((r["width"], r["depth"]), (math.inf, 0))
            spans[r["width"], r["depth"]] = (min(lo, r["tokens"]), max(hi, r["tokens"]))
        present = [sum(lo <= 10**e / (6 * params[k]) <= hi for k, (lo, hi) in spans.items())
                   for e in (18.5, 19, 19.5, 20, 20.5, 21)]
        kept = [n for n in present if n >= 3]
        expected += sum(kept[:-2]) + sum(kept[:-1]) + sum(kept)  # targets 1e20, 1e20.5, 1e21
    assert len(arch.table) == expected
    assert len(arch.outcomes("train_loss-C1e21", "C1e21")) == 9


def test_interpolation_matches_hand_computed_values(arch, wall, train_records):
    # 1024x28 (N = 543,482,880) at C = 1e20 trains 30.67B tokens: between steps 7155 and 7632.
    t = 1e20 / (6 * 543482880)
    lo, hi = _checkpoint(train_records, 1024, 28, 7155), _checkpoint(train_records, 1024, 28, 7632)
    assert lo[0] < t < hi[0]
    expected = _by_hand(t, lo, hi)
    assert _value(arch, "train_loss-C1e20", "C1e20", 1024, 28) == pytest.approx(expected, abs=1e-12)
    # DCLM validation loss of 1280x36 (N = 1,013,607,680) at C = 10^20.5: 52.0B tokens, 50B..60B.
    dclm = _records(DCLM)
    t = 10**20.5 / (6 * 1013607680)
    lo, hi = _checkpoint(dclm, 1280, 36, 11925), _checkpoint(dclm, 1280, 36, 14310)
    assert lo[0] < t < hi[0]
    expected = _by_hand(t, lo, hi)
    assert _value(arch, "dclm-C1e20.5", "C1e20.5", 1280, 36) == pytest.approx(expected, abs=1e-12)
    # 768x3 for one wall-clock hour at 0.333793 s/step: 10785 steps, between 10494 and 10971.
    (sps,) = {r["seconds_per_step"] for r in train_records if (r["width"], r["depth"]) == (768, 3)}
    t = 3600 / sps * 2048 * 2048
    lo, hi = _checkpoint(train_records, 768, 3, 10494), _checkpoint(train_records, 768, 3, 10971)
    assert lo[0] < t < hi[0]
    expected = _by_hand(t, lo, hi)
    assert _value(wall, "train_loss-8h", "1h", 768, 3) == pytest.approx(expected, abs=1e-12)


def test_loss_at_never_extrapolates():
    tokens, losses = [2e9, 4e9, 8e9], [4.0, 3.5, 3.2]
    assert loss_at(4e9, tokens, losses) == 3.5
    assert loss_at(math.sqrt(2e9 * 4e9), tokens, losses) == pytest.approx(3.75)
    assert loss_at(1.9e9, tokens, losses) is None and loss_at(8.1e9, tokens, losses) is None


def test_shapes_outside_their_curve_are_absent(arch):
    big = arch.outcomes("train_loss-C1e21", "C1e21")
    assert not ((big.width == 256) & (big.depth == 23)).any()  # would need 3.4T tokens
    small = arch.outcomes("train_loss-C1e21", "C1e18.5")
    assert not ((small.width == 3072) & (small.depth == 12)).any()  # 0.26B tokens < 2B
    assert "C1e18.5" not in {f.name for f in arch.experiment("dclm-C1e21").fidelities}  # < 3 shapes


def test_costs_from_measured_step_times(arch, wall, train_records):
    nodes = {(r["width"], r["depth"]): r["num_nodes"] for r in train_records}
    assert wall.experiment("train_loss-32h").fidelities[1].cost == 2 * 8 * statistics.median(nodes.values())
    for task, name in ((arch, "train_loss-C1e21"), (wall, "train_loss-32h")):
        costs = [f.cost for f in task.experiment(name).fidelities]
        assert costs == sorted(costs) and len(set(costs)) == len(costs)


@pytest.mark.parametrize("name", ["architecture", "architecture_wallclock"])
def test_test_priors_hold_only_cheaper_levels(name):
    task = load_task(name)
    train_fids = {f.name for e in task.split("train") for f in task.experiment(e).fidelities}
    assert len(task.split("test")) == 3
    for exp in task.split("test"):
        p = task.problem(exp, Budget("trials", 3))
        assert p.target not in train_fids and p.target not in set(p.prior.fidelity)
        cost = {f.name: f.cost for f in p.fidelities}
        assert all(cost[f] < cost[p.target] for f in set(p.prior.fidelity))


@pytest.mark.parametrize("name", ["architecture", "architecture_wallclock"])
def test_quick_suite_runs(name, tmp_path):
    check_quick_suite(load_task(name), tmp_path)


def test_no_run_is_declared_diverged(arch, wall):
    """No rule: no train run is far above its pool (module docstring), and no loss is missing."""
    assert not arch.table.diverged.any() and not wall.table.diverged.any()
