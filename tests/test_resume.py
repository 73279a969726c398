"""Kill `bench run` mid-way; the rerun completes with the same final numbers as a clean run."""

import signal
import subprocess
import sys
import time

import pytest

from bench.metrics import episodes_frame
from bench.store import Store

ARGS = ["run", "--task", "data_mixture", "--method", "regmix,random", "--suite", "quick",
        "--budget", "3", "--seeds", "2", "--quiet"]
N_EPISODES = 2 * 2 * 1 * 2  # methods x experiments x budgets x seeds


def bench(*args, **kw):
    cmd = [sys.executable, "-c", "from bench.cli import main; main()", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _scores(out):
    ep = episodes_frame(Store(out).summaries())
    return ep.set_index(["method", "experiment", "seed"])[["score", "gpu_hours", "trials"]].sort_index()


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    ref = bench(*ARGS, "--out", str(out))
    assert ref.wait(timeout=600) == 0, ref.stderr.read()
    return out


def _logs(out):
    return sorted((p.relative_to(out).as_posix(), len(p.read_text().splitlines()))
                  for p in out.rglob("*.jsonl"))


@pytest.mark.slow
@pytest.mark.parametrize("point", ["first trial", "first episode", "half"])
def test_resume_after_sigkill(tmp_path, clean, point):
    """SIGKILL to `bench run` alone (its workers must end by themselves) at a point in the run;
    the rerun completes with the same scores and trial logs as an uninterrupted run."""
    killed = tmp_path / "killed"
    proc = bench(*ARGS, "--out", str(killed))
    reached = {"first trial": lambda: any(p.stat().st_size for p in killed.rglob("*.jsonl")),
               "first episode": lambda: list(killed.rglob("*.done.json")),
               "half": lambda: len(list(killed.rglob("*.done.json"))) >= N_EPISODES // 2}[point]
    deadline = time.time() + 240
    while not reached() and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(list(killed.rglob("*.done.json"))) < N_EPISODES, "the run was not interrupted"

    rerun = bench(*ARGS, "--out", str(killed))
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    assert len(list(killed.rglob("*.done.json"))) == N_EPISODES
    assert _scores(killed).equals(_scores(clean))
    assert _logs(killed) == _logs(clean)
