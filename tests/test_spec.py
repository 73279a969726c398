"""User task specs: malformed ones fail with one clear message; the worked example runs end to end."""

import importlib.util
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.errors import BenchError
from bench.gym.problem import Budget, Query
from bench.gym.registry import load_task, resolve_tasks, task_names
from bench.gym.spec import TaskSpec, build_task, load_spec
from bench.gym.suites import load_suite
from bench.runner import plan
from bench.store import Store

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_sweep"
BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]

GOOD_SPEC = """\
name: sweep
table: runs.csv
objective: {column: loss, direction: minimize}
config: [lr]
fidelity: [params, tokens]
experiment: shape
"""
GOOD_CSV = """\
shape,lr,params,tokens,loss
a,0.001,1e6,1e9,3.0
a,0.01,1e6,1e9,2.9
a,0.001,1e8,1e10,2.5
a,0.01,1e8,1e10,2.4
"""


def write(tmp_path: Path, spec: str = GOOD_SPEC, csv: str | None = GOOD_CSV) -> Path:
    (tmp_path / "spec.yaml").write_text(spec)
    if csv is not None:
        (tmp_path / "runs.csv").write_text(csv)
    return tmp_path / "spec.yaml"


def test_good_spec_loads(tmp_path):
    task = load_task(str(write(tmp_path)))
    assert task.name == "sweep" and list(task.experiments) == ["a"]
    assert [f.name for f in task.experiments["a"].fidelities] == ["params=1M,tokens=1B",
                                                                  "params=100M,tokens=10B"]


@pytest.mark.parametrize("spec, csv, message", [
    (GOOD_SPEC.replace("config: [lr]", "config: [lr, warmup]"), GOOD_CSV,
     "table has no column(s) ['warmup']"),
    (GOOD_SPEC.replace("minimize", "minimise"), GOOD_CSV, "objective.direction: Input should be"),
    (GOOD_SPEC, GOOD_CSV.replace("a,0.01,1e6,", "a,0.01,big,"),
     "fidelity column 'params' must be numeric (it holds e.g. 'big')"),
    (GOOD_SPEC, GOOD_CSV.replace("a,0.01,1e8,1e10,2.4", "a,0.01,1e8,,2.4"),
     "fidelity column 'tokens' has 1 empty cell(s)"),
    (GOOD_SPEC, GOOD_CSV.replace(",2.4", ",diverged"),
     "objective column 'loss' must be numeric (it holds e.g. 'diverged')"),
    (GOOD_SPEC.replace("config: [lr]", "config: [lr"), GOOD_CSV, "is not valid YAML"),
    (GOOD_SPEC, None, "cannot read table"),
    (GOOD_SPEC.replace("objective:", "objectve:"), GOOD_CSV, "objectve: Extra inputs are not permitted"),
    (GOOD_SPEC + "test: [b]\n", GOOD_CSV, "test experiment(s) ['b'] are not in the table"),
    (GOOD_SPEC.replace("fidelity: [params, tokens]", "fidelity: [params]"), GOOD_CSV,
     "give cost: {column: ...}"),
    ("- just\n- a list\n", GOOD_CSV, "must be a YAML mapping"),
    # Column roles are disjoint: a config column holding outcomes or the answer is a leak.
    (GOOD_SPEC.replace("config: [lr]", "config: [lr, loss]"), GOOD_CSV,
     "column 'loss' is named as config and as objective"),
    (GOOD_SPEC.replace("config: [lr]", "config: [lr, params]"), GOOD_CSV,
     "column 'params' is named as config and as fidelity"),
    (GOOD_SPEC.replace("config: [lr]", "config: [lr, shape]"), GOOD_CSV,
     "column 'shape' is named as config and as experiment"),
    (GOOD_SPEC + "cost: {column: loss}\n", GOOD_CSV, "column 'loss' is named as objective and as cost"),
    (GOOD_SPEC.replace("config: [lr]", "config: [lr, lr]"), GOOD_CSV, "column 'lr' is named twice"),
])
def test_malformed_spec_names_the_problem(tmp_path, spec, csv, message):
    with pytest.raises(BenchError) as exc:
        load_task(str(write(tmp_path, spec, csv)))
    assert message in str(exc.value)


def test_booleans_are_categorical_and_tiny_log_values_work(tmp_path):
    """A real optimiser sweep: a boolean flag and Adam's epsilon at 1e-25 ... 1e-10."""
    rows = ["shape,lr,eps,nesterov,params,tokens,loss"]
    for params, tokens, shift in ((1e6, 1e9, 1.0), (1e8, 1e10, 0.0)):
        for lr in (1e-3, 1e-2):
            for eps in (1e-25, 1e-20, 1e-15, 1e-10):
                for nesterov in ("True", "False"):
                    rows.append(f"a,{lr},{eps},{nesterov},{params},{tokens},{shift + eps * 1e10 + lr}")
    spec = GOOD_SPEC.replace("config: [lr]", "config: [lr, eps, nesterov]")
    task = load_task(str(write(tmp_path, spec, "\n".join(rows) + "\n")))
    assert type(task.space["nesterov"]).__name__ == "CategoricalHyperparameter"
    assert list(task.space["nesterov"].choices) == [False, True]
    assert list(task.space["eps"].sequence) == [1e-25, 1e-20, 1e-15, 1e-10]  # an ordinal
    problem = task.problem("a", Budget("trials", 2))
    oracle = task.oracle("a")
    query = Query({"lr": 1e-3, "eps": 1e-20, "nesterov": True}, problem.target)
    outcome = oracle.evaluate(query)
    assert not outcome.snapped and outcome.value == pytest.approx(1e-10 + 1e-3)
    near = oracle.evaluate(Query({"lr": 1e-3, "eps": 2e-20, "nesterov": True}, problem.target))
    assert near.config["eps"] == 1e-20


def test_missing_spec_file(tmp_path):
    with pytest.raises(BenchError, match="does not exist"):
        load_task(str(tmp_path / "nope.yaml"))


def test_cli_reports_a_bad_spec_in_one_line(tmp_path):
    path = write(tmp_path, GOOD_SPEC.replace("minimize", "up"))
    r = subprocess.run([*BENCH, "run", "--task", str(path), "--method", "random", "--suite", "quick",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "objective.direction" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_example_table_is_what_its_generator_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_runs", EXAMPLE / "make_runs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.runs().to_csv(tmp_path / "runs.csv", index=False)
    assert (tmp_path / "runs.csv").read_text() == (EXAMPLE / "runs.csv").read_text()


def test_example_spec_builds_the_documented_task():
    task = load_task(str(EXAMPLE / "spec.yaml"))
    assert task.name == "my_sweep" and len(task.table) == 420
    assert task.split("test") == ["h2048"] and task.split("train") == ["h512", "h1024"]
    assert task.space["lr"].log and task.space["batch_size"].log  # override, and inferred
    target = task.experiments["h2048"].target
    assert target.descriptors == {"params": 805306368.0, "tokens": 32212254720.0}
    assert target.cost == 308.0  # from the gpu_hours column
    assert all(len(e.fidelities) == 4 for e in task.experiments.values())


@pytest.mark.slow
def test_example_runs_end_to_end(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run([*BENCH, "run", "--task", str(EXAMPLE / "spec.yaml"), "--method",
                        "random,best-prior,extrapolate", "--suite", "quick", "--out", str(out), "--quiet"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    done = sorted(out.rglob("*.done.json"))
    assert len(done) == 3 * 1 * 2 * 2  # methods x test experiments x budgets x seeds
    assert {p.relative_to(out).parts[3] for p in done} == {"random", "best-prior", "extrapolate"}


def test_task_all_plans_every_registered_task(tmp_path):
    p = plan(load_suite("quick"), resolve_tasks("all"), ["random"], Store(tmp_path))
    assert {key.task for _, key in p.todo} == {load_task(n).name for n in task_names()}
    assert resolve_tasks("all") == task_names()


# --- diverged runs, repeats and bad tables (build_task) -----------------------------------------
def sweep_rows(values: dict[float, list[float]], lrs=(1e-3, 2e-3, 4e-3, 8e-3)) -> list[dict]:
    """One run per lr at each params level (tokens 1e9 x params/1e6); values[params] in lr order."""
    return [{"shape": "a", "lr": lr, "params": p, "tokens": p * 1e3, "loss": v}
            for p, vals in values.items() for lr, v in zip(lrs, vals, strict=True)]


def spec_of(**changes) -> TaskSpec:
    base = {"name": "sweep", "objective": {"column": "loss", "direction": "minimize"},
            "config": ["lr"], "fidelity": ["params", "tokens"], "experiment": "shape"}
    return TaskSpec.model_validate({**base, **changes})


def flags(task, fidelity: str) -> list[bool]:
    """Diverged flags of experiment `a` at a fidelity, in lr order."""
    rows = task.table[task.table.fidelity == fidelity].sort_values("lr")
    return rows.diverged.tolist()


CHEAP, TARGET = "params=1M,tokens=1B", "params=100M,tokens=100B"


def test_nan_objectives_are_kept_as_diverged_runs(tmp_path):
    csv = GOOD_CSV + "a,0.1,1e6,1e9,nan\na,0.1,1e8,1e10,\na,1.0,1e8,1e10,inf\n"
    task = load_spec(write(tmp_path, csv=csv))
    assert len(task.table) == 7 and task.table.diverged.sum() == 3
    target = task.outcomes("a", "params=100M,tokens=10B").set_index("lr").value
    assert target[0.1] == target[1.0] == 2.5  # the worst finite value of the pool
    assert task.diverged("a", "params=100M,tokens=10B").tolist() == [False, False, True, True]


@pytest.mark.parametrize("rule, direction, cheap, target", [
    ({"worse_than": 3.0}, "minimize", [False, False, True, False], [False, False, False, False]),
    ({"worse_than": 1.1}, "maximize", [False, False, False, False], [True, False, False, False]),
    ({"worse_than_best_by": 0.5}, "minimize", [False, True, True, False], [False, False, False, True]),
    ({"worse_than_best_by": 0.5}, "maximize", [True, True, False, True], [True, False, True, False]),
    ({"worse_than": 3.0, "worse_than_best_by": 0.5}, "minimize",
     [False, True, True, False], [False, False, False, True]),
])
def test_each_threshold_rule_flags_runs_in_the_objective_direction(rule, direction, cheap, target):
    rows = sweep_rows({1e6: [2.0, 2.6, 3.5, 2.2], 1e8: [1.0, 1.4, 1.2, 1.8]})
    task = build_task(spec_of(objective={"column": "loss", "direction": direction}, diverged=rule),
                      pd.DataFrame(rows))
    assert flags(task, CHEAP) == cheap and flags(task, TARGET) == target
    assert len(task.table) == 8 and task.table.value.max() == 3.5  # flagged runs keep their values


@pytest.mark.parametrize("column, flag", [(["ok", "diverged", "ok", "ok"], "diverged"),
                                          ([False, True, False, False], None)])
def test_a_flag_column_marks_runs_diverged(column, flag):
    rows = sweep_rows({1e6: [2.0, 2.1, 2.2, 2.3], 1e8: [1.0, 1.1, 1.2, 1.3]})
    for i, row in enumerate(rows):
        row["status"] = column[i % 4]
    rule = {"column": "status"} | ({"flag": flag} if flag else {})
    task = build_task(spec_of(diverged=rule), pd.DataFrame(rows))
    assert flags(task, CHEAP) == flags(task, TARGET) == [False, True, False, False]
    assert task.table.value.min() == 1.0  # a flagged run keeps its own value
    assert "status" not in task.table.columns and "status" not in task.space


@pytest.mark.parametrize("rule, message", [
    ("{}", "give at least one of worse_than, worse_than_best_by, column"),
    ("{worse_than: 1, flag: x}", "flag needs column"),
    ("{worse_than_best_by: 0}", "greater than 0"),
    ("{worse_than: 1, why: x}", "why: Extra inputs are not permitted"),
    ("{column: status}", "table has no column(s) ['status']"),
    ("{column: loss}", "column 'loss' is named as objective and as diverged flag"),
])
def test_a_bad_diverged_rule_names_the_problem(tmp_path, rule, message):
    with pytest.raises(BenchError) as exc:
        load_task(str(write(tmp_path, GOOD_SPEC + f"diverged: {rule}\n")))
    assert message in str(exc.value)


def test_repeated_runs_are_averaged_with_a_warning(caplog):
    rows = sweep_rows({1e6: [2.0, 2.1, 2.2, 2.3], 1e8: [1.0, 1.1, 1.2, 1.3]})
    first, second = rows[4], rows[5]  # target, lr 1e-3 and 2e-3
    rows += [{**first, "loss": 1.4}, {**first, "loss": np.nan},  # 1 of 3 diverged: kept, mean 1.2
             {**second, "loss": np.nan}, {**second, "loss": 9.0}]  # 2 of 3 diverged (NaN, > 5)
    with caplog.at_level(logging.WARNING, logger="bench.gym.spec"):
        task = build_task(spec_of(diverged={"worse_than": 5.0}), pd.DataFrame(rows))
    (record,) = [r for r in caplog.records if r.name == "bench.gym.spec"]
    assert "6 rows repeat a run" in record.getMessage() and "merged into 2 runs" in record.getMessage()
    assert len(task.table) == 8
    target = task.outcomes("a", TARGET).set_index("lr").value
    assert target[1e-3] == pytest.approx(1.2) and target[2e-3] == pytest.approx((1.1 + 9.0) / 2)
    assert flags(task, TARGET) == [False, True, False, False]
    with caplog.at_level(logging.WARNING, logger="bench.gym.spec"):
        caplog.clear()
        build_task(spec_of(), pd.DataFrame(sweep_rows({1e6: [2.0] * 4, 1e8: [1.0] * 4})))
    assert not caplog.records  # no repeats, no warning


def test_repeats_with_no_finite_value_are_one_diverged_run():
    rows = sweep_rows({1e6: [2.0, 2.1, 2.2, 2.3], 1e8: [1.0, 1.1, 1.2, 1.3]})
    rows[4]["loss"] = np.inf
    rows.append({**rows[4], "loss": np.nan})
    task = build_task(spec_of(), pd.DataFrame(rows))
    assert flags(task, TARGET) == [True, False, False, False]
    assert task.outcomes("a", TARGET).value.max() == 1.3  # scored as the pool's worst finite run


@pytest.mark.parametrize("csv, spec, message", [
    ("shape,lr,params,tokens,loss\n", GOOD_SPEC, "task sweep: the table has no rows"),
    (GOOD_CSV.replace("a,0.01,1e6,1e9,2.9", "a,0.01,0,1e9,2.9"), GOOD_SPEC,
     "task sweep: fidelity level params=0,tokens=1B costs 0 GPU-hours"),
    ("shape,lr,params,tokens,hours,loss\na,0.001,1,1,1.5,3\na,0.01,1,1,-2,2.9\na,0.001,2,2,3,2\n",
     GOOD_SPEC + "cost: {column: hours}\n",
     "fidelity level params=1,tokens=1 has a run costing -2 (column 'hours')"),
    ("shape,lr,params,tokens,hours,loss\na,0.001,1,1,1,3\na,0.001,2,2,0,2\n",
     GOOD_SPEC + "cost: {column: hours}\n", "fidelity level params=2,tokens=2 has a run costing 0"),
    ("\n".join(GOOD_CSV.splitlines()[:3]) + "\n", GOOD_SPEC,
     "only one fidelity level (params=1M,tokens=1B), so there is nothing cheaper to learn from"),
    (GOOD_CSV.replace(",2.5\n", ",nan\n").replace(",2.4\n", ",\n"), GOOD_SPEC,
     "task sweep: a at params=100M,tokens=10B: no run has a finite objective"),
])
def test_a_bad_table_names_the_problem(tmp_path, csv, spec, message):
    with pytest.raises(BenchError) as exc:
        load_task(str(write(tmp_path, spec, csv)))
    assert message in str(exc.value)


def test_cli_runs_a_sweep_with_nan_objectives(tmp_path):
    lrs = np.logspace(-4, -1, 12)  # budget 5 needs a target pool of at least 10
    loss = 2.0 + (np.log10(lrs) + 2.5) ** 2
    rows = sweep_rows({1e6: [*loss[:-1], np.nan], 1e8: [np.nan, np.inf, *(loss[2:] - 1)]}, lrs)
    path = write(tmp_path, csv=pd.DataFrame(rows).to_csv(index=False))
    r = subprocess.run([*BENCH, "run", "--task", str(path), "--method", "random", "--suite", "quick",
                        "--out", str(tmp_path / "out"), "--quiet"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "out").rglob("*.done.json"))) == 2 * 2  # budgets x seeds


def test_cli_reports_a_zero_cost_in_one_line(tmp_path):
    csv = GOOD_CSV.replace("shape,lr,params,tokens,loss", "shape,lr,params,tokens,loss,hours")
    csv = "\n".join(line + (",0" if i == 1 else ",1") if i else line
                    for i, line in enumerate(csv.splitlines())) + "\n"
    path = write(tmp_path, GOOD_SPEC + "cost: {column: hours}\n", csv)
    r = subprocess.run([*BENCH, "run", "--task", str(path), "--method", "random", "--suite", "quick",
                        "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert "fidelity level params=1M,tokens=1B has a run costing 0" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
