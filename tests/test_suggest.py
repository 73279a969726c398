"""`bench suggest`: advice at a fidelity the table does not hold, from the user's runs only;
observed target runs move it; the backtest scores it exactly as `bench run` does; bad input is one
clear error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.episode import play_episode
from bench.errors import BenchError
from bench.gym.problem import Fidelity
from bench.gym.registry import load_task
from bench.gym.spec import flops_gpu_hours, outside_space
from bench.gym.suites import load_suite
from bench.methods import MethodSpec, method
from bench.store import EpisodeKey
from bench.suggest.advice import cannot_advise, run_outcome, suggest
from bench.suggest.backtest import BACKTEST_SUITE, backtest
from bench.suggest.output import backtest_summary
from bench.suggest.pool import SOBOL_POOL, prepare, read_observed
from bench.suggest.target import fit_cost, parse_target, spec_grid

ROOT = Path(__file__).resolve().parents[1]
SPEC = str(ROOT / "examples" / "my_sweep" / "spec.yaml")
TARGET = "params=1.61e9,tokens=6.44e10"  # h2048 at 32 layers, 40 tokens per parameter: not in runs.csv
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]
REGMIX_SMALL = MethodSpec(name="regmix", cls="baselines.regmix:RegMix", family="regression",
                          params={"n_estimators": 100})  # RegMix with fewer trees: seconds, not minutes


def spec_text() -> str:
    """The example spec, its table named by absolute path (to copy it elsewhere)."""
    return Path(SPEC).read_text().replace("table: runs.csv", f"table: {Path(SPEC).parent / 'runs.csv'}")


@pytest.fixture(scope="module")
def task():
    return load_task(SPEC)


def setup_for(task, observed=None, grid=True, seed=0, n=3):
    descriptors = parse_target(TARGET, task)
    grid = spec_grid(SPEC) if grid else None
    return prepare(task, "h2048", descriptors, grid, observed, n, None, seed)


def test_suggestion_at_a_fidelity_absent_from_the_table(task):
    setup = setup_for(task)
    problem = setup.problem
    target = problem.fidelities[-1]
    assert target.name not in {f.name for f in task.fidelities()}
    assert target.cost > task.experiment("h2048").target.cost
    # The methods see the user's runs of h2048 and nothing else: every run, no target outcome.
    runs = task.table[task.table.experiment == "h2048"]
    assert len(problem.prior) == len(runs) and set(problem.prior.fidelity) == set(runs.fidelity)
    assert "value" not in problem.candidates().columns and len(problem.arrays()) == 7 * 5
    advice = suggest(method("extrapolate"), setup, 0, task, 3)
    ids = [s.candidate for s in advice.suggestions]
    assert len(set(ids)) == 3 and not advice.note
    # Step Law (the example's generator): the optimal learning rate falls with scale, so the
    # extrapolated one is at most the best learning rate of the most expensive cheap level.
    top = runs[runs.fidelity == task.experiment("h2048").target.name]
    assert advice.suggestions[0].config["lr"] <= top.loc[top.value.idxmin(), "lr"]


def test_sobol_pool_without_a_grid_is_seeded_and_inside_the_space(task):
    a, b = setup_for(task, grid=False, seed=4), setup_for(task, grid=False, seed=4)
    pool = a.problem.candidates()
    assert pool.equals(b.problem.candidates()) and 200 < len(pool) <= SOBOL_POOL
    assert not pool.equals(setup_for(task, grid=False, seed=5).problem.candidates())
    assert all(outside_space(task.space[c], v) is None for c in pool.columns for v in pool[c])
    assert pool.batch_size.map(type).eq(int).all()


def test_target_cost_from_a_power_law_or_asked_for(tiny_task):
    cells = [(1e6, 1e9), (1e7, 1e9), (1e7, 1e10), (1e8, 4e10)]
    levels = [Fidelity(f"l{i}", {"params": n, "tokens": d}, flops_gpu_hours(n, d))
              for i, (n, d) in enumerate(cells)]
    cost, note = fit_cost(levels, {"params": 1e10, "tokens": 2e11})  # the default 6ND model: exact
    assert cost == pytest.approx(flops_gpu_hours(1e10, 2e11), rel=1e-9) and "largest error there 0%" in note
    with pytest.raises(BenchError, match="2 fidelity levels are too few .* give --target-cost"):
        fit_cost(tiny_task.fidelities(), {"params": 1e10, "tokens": 2e11})
    setup = prepare(tiny_task, "b", {"params": 1e10, "tokens": 2e11}, {"lr": [1e-3, 1e-2]}, None, 1,
                    None, 0, cost=500.0)
    assert setup.problem.fidelities[-1].cost == 500.0 and len(setup.problem.arrays()) == 2


def test_observed_runs_change_the_next_suggestion(task):
    before = suggest(REGMIX_SMALL, setup_for(task), 0, task, 3)
    first = before.suggestions[0].config
    bad = pd.DataFrame([{**first, "value": 9.0}])
    good = pd.DataFrame([{**first, "value": 2.0}])
    after_bad = suggest(REGMIX_SMALL, setup_for(task, bad), 0, task, 3)
    after_good = suggest(REGMIX_SMALL, setup_for(task, good), 0, task, 3)
    for after in (after_bad, after_good):  # the run done is not suggested again
        assert first not in [s.config for s in after.suggestions]
    assert [s.config for s in after_bad.suggestions] != [s.config for s in after_good.suggestions]
    # Predictions are in the objective's units at the target and follow what it was told.
    assert after_good.suggestions[0].mean < after_bad.suggestions[0].mean
    assert all(s.std is None for s in after_good.suggestions)  # LightGBM has no uncertainty


def test_observed_configuration_off_the_grid_is_added_and_told(task):
    off = pd.DataFrame([{"lr": 0.0011, "batch_size": 500, "value": 2.40}])
    setup = setup_for(task, off)
    assert len(setup.problem.arrays()) == 36 and "1 observed configuration" in setup.pool_note
    cid, value = setup.observed[0]
    assert setup.problem.arrays().records[cid] == {"batch_size": 500, "lr": 0.0011} and value == 2.40


def test_gp_prediction_reproduces_what_it_was_told(task):
    told = pd.DataFrame([{"lr": 0.001, "batch_size": 512, "value": 2.38},
                         {"lr": 0.004, "batch_size": 64, "value": 2.45},
                         {"lr": 0.00025, "batch_size": 1024, "value": 2.42}])
    setup = setup_for(task, told)
    optimizer = method("botorch-ei").make(setup.problem, 0)
    for k in range(3):
        query = optimizer.ask()
        optimizer.tell(query, run_outcome(setup.problem, query, *setup.observed[k]))
    mean, std = optimizer.predict(np.array([cid for cid, _ in setup.observed]))
    assert mean == pytest.approx(told.value.to_numpy(), abs=0.02) and (std > 0).all()


@pytest.mark.parametrize("spec", [method("extrapolate"), method("optuna-tpe"), method("botorch-ei"),
                                  REGMIX_SMALL], ids=lambda s: s.cls.rpartition(":")[2])
def test_backtest_equals_the_benchmark(task, spec):
    """Same method, seed and budget: the backtest's rounds are the benchmark episode's trials."""
    budget, prior = 3, load_suite(BACKTEST_SUITE).prior_for(task.name)
    for seed in (0, 1):
        row = backtest(spec, task, "h2048", seed, budget, n=2)
        key = EpisodeKey(BACKTEST_SUITE, task.name, spec.name, "h2048", "trials", budget, seed)
        summary, error = play_episode(key, task, spec, [], prior=prior)
        assert error is None and row["failed"] is None
        assert row["curve"] == summary.curve and len(row["curve"]) == budget
        scores = summary.scores  # the benchmark's, by the same Scorer
        assert {k: row[k] for k in ("pregret", "regret", "nregret", "diverged")} == \
            {k: scores[k] for k in ("pregret", "regret", "nregret", "diverged")}
        values = task.oracle("h2048", seed).scorer.values
        assert row["pregret"] == np.mean(values < row["best"])  # by hand: the share strictly better
        assert 0 <= row["pregret_at_once"] <= 1 and 0 <= row["nregret_at_once"]


def test_backtest_failure_scores_the_worst_candidate(task, monkeypatch):
    """The benchmark's failure rule: the worst candidate, pregret 1."""
    def broken(*_a, **_k):
        raise RuntimeError("boom")

    monkeypatch.setattr("bench.suggest.backtest.advise", broken)
    row = backtest(method("random"), task, "h2048", 0, 2, n=1)
    scorer = task.scorer("h2048")
    assert row["failed"] == "RuntimeError: boom" and row["pregret"] == row["pregret_at_once"] == 1.0
    assert row["best"] == scorer.worst and row["nregret"] == pytest.approx(scorer.nregret(scorer.worst))
    summary = backtest_summary([row])
    assert summary.loc[0, "pregret"] == 1.0 and summary.loc[0, "failed"] == 1


def test_a_method_that_repeats_itself_gives_fewer(task):
    advice = suggest(method("centroid"), setup_for(task), 0, task, 3)
    assert len(advice.suggestions) == 1 and "until it is told an outcome" in advice.note


def test_learned_methods_without_train_experiments_are_skipped(tmp_path, task):
    (tmp_path / "spec.yaml").write_text(spec_text().replace("test: [h2048]", ""))
    no_train = load_task(str(tmp_path / "spec.yaml"))
    assert "has none" in cannot_advise(method("fsbo"), no_train)
    assert cannot_advise(method("extrapolate"), no_train) is None


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace("lr: [0.00025,", "lr: [0.1, 0.00025,"),
     "target_grid: lr=0.1 is outside the sweep's range [0.00025, 0.016]"),
    (lambda s: s.replace("  batch_size: [64, 128, 256, 512, 1024]\n", ""),
     "target_grid must give values for every parameter: missing batch_size"),
    (lambda s: s.replace("batch_size: [64,", "batch_size: [64.5,"), "batch_size=64.5 is not a whole number"),
])
def test_bad_target_grid_is_one_clear_error(tmp_path, edit, message):
    (tmp_path / "spec.yaml").write_text(edit(spec_text()))
    with pytest.raises(BenchError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_task(str(tmp_path / "spec.yaml"))


@pytest.mark.parametrize("target, message", [
    ("params=1.61e9", "--target needs every fidelity column of my_sweep (params, tokens): missing tokens"),
    ("params=1.61e9,tokens=6e10,layers=32", "unknown layers"),
    ("params=big,tokens=6e10", "--target: params='big' is not a number"),
    ("params=805306368,tokens=32212254720", "is a fidelity of h2048 in the table"),
    ("params=1e6,tokens=1e7", "must cost more than every fidelity of h2048"),
])
def test_bad_target_is_one_clear_error(task, target, message):
    with pytest.raises(BenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        prepare(task, "h2048", parse_target(target, task), None, None, 3, None, 0)


@pytest.mark.parametrize("csv, message", [
    ("lr,batch_size\n0.001,512\n", "has no column(s) ['loss']"),
    ("lr,batch_size,loss\n0.1,512,2.4\n", "row 2: lr=0.1 is outside the sweep's range"),
    ("lr,batch_size,loss\n0.001,512,\n", "row 2: loss is empty"),
    ("lr,batch_size,loss,params\n0.001,512,2.4,805306368\n", "params=805306368 is not the target's"),
    (None, "cannot read --observed"),
])
def test_bad_observed_csv_is_one_clear_error(task, tmp_path, csv, message):
    if csv is not None:
        (tmp_path / "obs.csv").write_text(csv)
    with pytest.raises(BenchError) as exc:
        read_observed(tmp_path / "obs.csv", task, parse_target(TARGET, task))
    assert message in str(exc.value)


def test_cli_suggests_writes_files_and_bad_input_exits_2(tmp_path):
    observed = tmp_path / "target_runs.csv"
    observed.write_text("lr,batch_size,loss\n0.002,512,2.39\n")
    r = subprocess.run([*BENCH, "suggest", "--task", SPEC, "--target", TARGET, "--method", "extrapolate",
                        "--observed", str(observed), "-n", "2", "--out", str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "out" / "suggestions.json").read_text())
    assert doc["observed"] == 1 and doc["target"]["descriptors"] == {"params": 1.61e9, "tokens": 6.44e10}
    rows = pd.read_csv(tmp_path / "out" / "suggestions.csv")
    assert list(rows["rank"]) == [1, 2] and {"lr": 0.002, "batch_size": 512} not in \
        rows[["lr", "batch_size"]].to_dict("records")
    bad_grid = tmp_path / "spec.yaml"
    bad_grid.write_text(spec_text().replace("lr: [0.00025,", "lr: [0.1, 0.00025,"))
    for spec, target, message in ((SPEC, "params=1.61e9", "missing tokens"),
                                  (str(bad_grid), TARGET, "target_grid: lr=0.1 is outside")):
        r = subprocess.run([*BENCH, "suggest", "--task", spec, "--method", "extrapolate", "--target", target],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and message in r.stderr
        assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
