"""Kill `bench run` mid-way; the rerun completes with the same final numbers as a clean run."""

import os
import signal
import subprocess
import sys
import time

import pytest

from bench.metrics import episodes_frame
from bench.store import Store

ARGS = ["run", "--task", "data_mixture", "--method", "regmix,random", "--suite", "quick",
        "--budget", "3", "--seeds", "4", "--quiet"]
N_EPISODES = 2 * 2 * 1 * 4  # methods x experiments x budgets x seeds


def bench(*args, **kw):
    cmd = [sys.executable, "-c", "from bench.cli import main; main()", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


def _scores(out):
    ep = episodes_frame(Store(out).summaries())
    return ep.set_index(["method", "experiment", "seed"])[["score", "gpu_hours", "trials"]].sort_index()


@pytest.mark.slow
def test_resume_after_kill(tmp_path):
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = bench(*ARGS, "--out", str(killed), start_new_session=True)
    deadline = time.time() + 240
    while not list(killed.rglob("*.done.json")) and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the CLI and its worker processes
    proc.wait()
    done = len(list(killed.rglob("*.done.json")))
    assert 0 < done < N_EPISODES, "the run was not interrupted mid-way"

    rerun = bench(*ARGS, "--out", str(killed))
    assert rerun.wait(timeout=600) == 0, rerun.stderr.read()
    ref = bench(*ARGS, "--out", str(clean))
    assert ref.wait(timeout=600) == 0, ref.stderr.read()
    assert len(list(killed.rglob("*.done.json"))) == N_EPISODES
    assert _scores(killed).equals(_scores(clean))
