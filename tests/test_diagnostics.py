"""Landscape diagnostics on a hand-made table (hand-computed values), on real data, and the card."""

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.gym import diagnostics
from bench.gym.registry import load_task, task_names
from bench.gym.spec import TaskSpec, build_task

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "my_sweep" / "spec.yaml"
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


@pytest.fixture
def hand_task():
    """One experiment, three fidelities, a 1-D linear config x in [1, 6.2].

    size 1 and 2 share x = 1..6 (6 exact matches); size 3 holds x = 1.1, 3.9, 6.2 only.
    """
    levels = {1: ([1, 2, 3, 4, 5, 6], [1, 3, 5, 2, 4, 6]),
              2: ([1, 2, 3, 4, 5, 6], [6, 4, 2, 1, 3, 5]),
              3: ([1.1, 3.9, 6.2], [3, 1, 2])}
    rows = [{"x": x, "size": s, "hours": float(s), "loss": float(v)}
            for s, (xs, vs) in levels.items() for x, v in zip(xs, vs, strict=True)]
    spec = TaskSpec(name="hand", objective={"column": "loss", "direction": "minimize"},
                    config=[{"name": "x", "type": "float", "log": False}], fidelity=["size"],
                    fidelity_label="size", cost={"column": "hours"})
    return build_task(spec, pd.DataFrame(rows))


def test_spearman_by_hand(hand_task):
    corr = diagnostics.rank_correlations(hand_task)
    assert corr[["lower", "upper", "method", "n"]].values.tolist() == [
        ["1", "2", "exact", 6], ["2", "3", "nearest", 6]]
    # exact: ranks (1,3,5,2,4,6) vs (6,4,2,1,3,5): sum d^2 = 38, rho = 1 - 6*38/(6*35)
    assert corr.spearman[0] == pytest.approx(1 - 6 * 38 / 210)
    # nearest: x = 1..6 -> 1.1, 1.1, 3.9, 3.9, 3.9, 6.2, so size-3 values 3, 3, 1, 1, 1, 2,
    # ranks (5.5, 5.5, 2, 2, 2, 4) against (6, 4, 2, 1, 3, 5): Pearson of the ranks
    # = 13.5 / sqrt(17.5 * 15)
    assert corr.spearman[1] == pytest.approx(13.5 / math.sqrt(17.5 * 15))
    # snap distances |x - x'| / 5.2: 0.1, 0.9, 0.9, 0.1, 1.1, 0.2 -> median 0.55 / 5.2
    assert corr.distance[1] == pytest.approx(0.55 / 5.2)


def test_too_few_exact_matches_fall_back_to_nearest(hand_task, monkeypatch):
    monkeypatch.setattr(diagnostics, "MIN_EXACT", 7)
    corr = diagnostics.rank_correlations(hand_task)
    assert corr.method.tolist() == ["nearest", "nearest"]
    assert corr.spearman[0] == pytest.approx(1 - 6 * 38 / 210)  # nearest of x is x itself here


def test_optimum_shift_by_hand(hand_task):
    shift = diagnostics.optimum_shift(hand_task)
    assert shift.x.tolist() == [1, 4, 3.9]  # best x per fidelity; the target's optimum is 3.9
    assert shift.distance.tolist() == pytest.approx([2.9 / 5.2, 0.1 / 5.2, 0.0])
    # size 1's best (x=1) at the target: nearest 1.1 scores 3 of the pool (3, 1, 2): 2 of 3 are
    # strictly better -> pregret 2/3; optimum 1, median 2 -> nregret 2
    assert shift.target_pregret.tolist() == pytest.approx([2 / 3, 0.0, 0.0])
    assert shift.target_nregret.tolist() == pytest.approx([2.0, 0.0, 0.0])


def test_summary_by_hand(hand_task):
    s = diagnostics.summary(hand_task)
    assert s.experiment.tolist() == ["hand", "median"]
    row = s.iloc[0]
    assert row.spearman_median == pytest.approx((1 - 6 * 38 / 210 + 13.5 / math.sqrt(17.5 * 15)) / 2)
    assert row.spearman_to_target == pytest.approx(13.5 / math.sqrt(17.5 * 15))
    assert (row["shift"], row.shift_pregret, row.shift_nregret, row.pairs_nearest) == (
        pytest.approx(0.1 / 5.2), 0.0, 0.0, 1)
    assert s.iloc[1].spearman_median == pytest.approx(row.spearman_median)


def test_real_data_mixture_pairs():
    corr = diagnostics.rank_correlations(load_task("data_mixture"))
    assert len(corr) == 13 * 2  # the 13 Pile domains, two adjacent pairs each
    first, second = corr[corr.lower == "1M"], corr[corr.lower == "60M"]
    assert (first.method == "exact").all() and (first.n == 256).all()  # the same 256 mixtures
    assert (second.method == "nearest").all() and (second.n == 256).all()  # 1B ran other mixtures
    assert first.spearman.median() > 0.9 > second.spearman.median()


@pytest.mark.slow
def test_card_for_a_spec_and_a_builtin_task():
    r = subprocess.run([*BENCH, "tasks", "--describe", str(EXAMPLE)], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for text in ("task my_sweep", "source: none declared", "simulated: no", "test (1): h2048",
                 "params=805M,tokens=32.2B", "Spearman rank correlation", "exact", "median"):
        assert text in r.stdout, text
    r = subprocess.run([*BENCH, "tasks", "--describe", "data_mixture"], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    for text in ("licence: MIT", "RegMix: Data Mixture as Regression", "test (3)", "nearest"):
        assert text in r.stdout, text
    r = subprocess.run([*BENCH, "tasks", "--describe", "nope"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unknown task 'nope'" in r.stderr
    r = subprocess.run([*BENCH, "tasks"], capture_output=True, text=True, timeout=120)  # the list
    assert r.returncode == 0 and all(name in r.stdout for name in task_names())


def test_landscape_figure_for_a_spec_without_results(tmp_path):
    r = subprocess.run([*BENCH, "plot", "--runs", str(tmp_path), "--task", str(EXAMPLE)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "figures" / "landscape_my_sweep.png").stat().st_size > 10_000
    assert (tmp_path / "figures" / "landscape_my_sweep.pdf").is_file()
