"""Scale-out and reliability: executors give the same numbers, the client is the only writer,
episodes are bounded, workers die with their parent, runs survive SIGKILL, `--out` is locked."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from bench.errors import BenchError
from bench.gym.registry import load_task
from bench.gym.suites import load_suite
from bench.metrics import episodes_frame
from bench.runner import execute, plan
from bench.store import EpisodeKey, Store
from bench.workers import send
from tests.helpers import with_presets

ROOT = Path(__file__).parents[1]
TIMING = ["ask_seconds"]


def _frame(out) -> pd.DataFrame:
    ep = episodes_frame(Store(out).summaries())
    cols = ["method", "experiment", "budget", "seed", "score", "trials", "failed", "gpu_hours"]
    return ep[cols].sort_values(cols[:4]).reset_index(drop=True)


def _trial_logs(out: Path) -> dict[str, list[str]]:
    """Every trial log, timings removed."""
    import json

    logs = {}
    for path in sorted(Path(out).rglob("*.jsonl")):
        rows = [{k: v for k, v in json.loads(line).items() if k not in TIMING}
                for line in path.read_text().splitlines()]
        logs[str(path.relative_to(out))] = rows
    return logs


@pytest.fixture
def configs(tmp_path, monkeypatch):
    """The project's configs plus a `stalling` preset (tests.helpers.Stalling) and a learned
    method whose training takes a minute (`slow-learner`)."""
    yield from with_presets(tmp_path, monkeypatch, stalling={
        "class": "tests.helpers:Stalling", "family": "test", "in_all": False,
        "params": {"seconds": 60.0, "stall_seed": 1}}, **{"slow-learner": {
        "class": "tests.helpers:LearnedCentre", "family": "learned-bo", "in_all": False,
        "params": {"sleep": 60.0}}})


def _run(suite, methods_, out, **kw):
    store = Store(out)
    p = plan(suite, ["data_mixture"], methods_, store)
    return execute(p, suite, store, quiet=True, **kw)


def test_same_numbers_for_every_executor_and_job_count(tmp_path, monkeypatch):
    """jobs 1, jobs 2 and a Dask LocalCluster whose workers run in another directory (so a
    relative --out on their side would land elsewhere) give identical trial logs and scores."""
    from dask.distributed import LocalCluster

    suite = load_suite("quick").model_copy(update={"seeds": 2})
    methods_ = ["random", "best-prior"]
    client_dir, worker_dir = tmp_path / "client", tmp_path / "workers"
    client_dir.mkdir()
    worker_dir.mkdir()
    monkeypatch.chdir(worker_dir)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        monkeypatch.chdir(client_dir)
        _run(suite, methods_, Path("dask"), scheduler=cluster.scheduler_address)
    _run(suite, methods_, Path("one"), jobs=1)
    _run(suite, methods_, Path("two"), jobs=2)
    assert not list(worker_dir.rglob("*.jsonl"))  # the workers wrote nothing: the client did
    one = _frame("one")
    assert len(one) == 2 * 2 * 2 * 2 and not one.failed.any()
    for other in ("two", "dask"):
        pd.testing.assert_frame_equal(one, _frame(other))
        assert _trial_logs(Path("one")) == _trial_logs(Path(other))


def test_episode_time_limit_and_worker_death(configs, tmp_path, monkeypatch):
    """An episode past its limit is a `timeout` failure and the rest of its batch still runs; a
    worker that dies mid-episode is replaced and that episode rerun, its log not duplicated."""
    suite = load_suite("quick").model_copy(update={"seeds": 2, "experiments": 1, "budgets": [3]})
    writer = _run(suite, ["stalling"], tmp_path / "limit", jobs=1, limit=3.0)
    frame = _frame(tmp_path / "limit")
    assert list(frame.failed) == [False, True]  # seed 1 stalls
    assert [r for _, r in writer.failures] == ["timeout after 3 s"]
    assert len(Store(tmp_path / "limit").trial_log(
        next(k for k, _ in writer.failures)).read_text().splitlines()) == 0
    monkeypatch.setenv("BENCH_TEST_DIE_ONCE", str(tmp_path / "died"))
    suite = suite.model_copy(update={"seeds": 1})
    writer = _run(suite, ["stalling"], tmp_path / "death", jobs=1)
    assert (tmp_path / "died").exists() and writer.failures == []
    logs = _trial_logs(tmp_path / "death")
    assert [len(v) for v in logs.values()] == [3]


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(("method", "children"), [("stalling", 2), ("slow-learner", 4)],
                         ids=["in episodes", "while training"])
def test_workers_end_when_bench_run_is_killed(configs, tmp_path, method, children):
    """Killed in its episodes (2 workers) or while it trains a checkpoint (the 2 workers, the
    training process and its pool's resource tracker): nothing it started outlives it."""
    cmd = [sys.executable, "-c", "from bench.cli import main; main()", "run", "--task", "data_mixture",
           "--method", method, "--suite", "quick", "--seeds", "2", "--jobs", "2", "--quiet",
           "--out", str(tmp_path / "out")]
    env = {**os.environ, "BENCH_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_children(proc.pid)) < children and time.time() < deadline:
        time.sleep(0.2)
    started = _children(proc.pid)
    assert len(started) >= children
    time.sleep(2)  # inside their episodes, or training
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30  # a process still importing (on a busy machine) exits when it is done
    while any(_alive(w) for w in started) and time.time() < deadline:
        time.sleep(0.2)
    survivors = [Path(f"/proc/{w}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
                 for w in started if _alive(w)]
    assert not survivors, f"outlived bench run: {survivors}"


def test_a_worker_whose_client_is_gone_runs_nothing(configs):
    """A client killed while its worker still imports has already sent the first batch (it waits
    in the pipe): the worker, watching the client pid it was given rather than whichever process
    adopted it, exits at once instead of running that batch (here an episode that stalls)."""
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    worker = subprocess.Popen([sys.executable, "-m", "bench.workers", str(gone.pid)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    suite = load_suite("quick")
    key = EpisodeKey("quick", "data_mixture", "stalling", load_task("data_mixture").split("test")[0],
                     "trials", 3.0, 1)
    send(worker.stdin, ("batch", "data_mixture", [key], suite.protocol("data_mixture")))
    try:
        assert worker.wait(timeout=60) == 3
    finally:
        worker.kill()


def test_a_table_warning_is_shown_once_whatever_the_job_count(tmp_path):
    """sft_lora's table repeats runs (merged, with a warning when it loads): the client and its
    two workers all load it, and the user reads the warning once."""
    done = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", "--task",
                           "sft_lora", "--method", "random,centroid", "--suite", "quick", "--budget", "1",
                           "--seeds", "1", "--jobs", "2", "--quiet", "--out", str(tmp_path / "out")],
                          env={**os.environ, "BENCH_CACHE": str(tmp_path / "cache")},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("rows repeat a run") == 1, done.stderr


def test_a_second_run_on_the_same_out_gets_a_clear_message(tmp_path):
    store = Store(tmp_path)
    with store.lock():
        done = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", "--task",
                               "data_mixture", "--method", "random", "--suite", "quick", "--quiet",
                               "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "another `bench run` is writing to" in done.stderr
    with pytest.raises(BenchError, match="another"):
        with store.lock(), Store(tmp_path).lock():
            pass


def test_a_damaged_trial_log_makes_its_episode_run_again(tmp_path):
    suite = load_suite("quick").model_copy(update={"seeds": 1, "experiments": 1, "budgets": [3]})
    _run(suite, ["random"], tmp_path, jobs=1)
    store = Store(tmp_path)
    (log,) = tmp_path.rglob("*.jsonl")
    before = log.read_text()
    before_rows = _trial_logs(tmp_path)
    log.write_text(before[: len(before) - 7])  # a cut last line
    p = plan(suite, ["data_mixture"], ["random"], store)
    assert len(p.todo) == 1 and p.done == 0
    execute(p, suite, store, quiet=True)
    assert _trial_logs(tmp_path) == before_rows and plan(suite, ["data_mixture"], ["random"], store).done == 1
