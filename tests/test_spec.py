"""User task specs: malformed ones fail with one clear message; the worked example runs end to end."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from bench.errors import BenchError
from bench.gym.problem import Budget, Query
from bench.gym.registry import load_task, resolve_tasks, task_names
from bench.runner import plan
from bench.store import Store
from bench.suites import load_suite

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
