"""scripts/reference_results.sh: what it runs, checked with a recording `bench` (the real run is
hours of CPU). Every method it names resolves, every stage runs its suite, and exit codes follow
the script's rule (1 from a run goes on and is returned at the end; 2 stops at once)."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from bench.methods import methods

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "reference_results.sh"


def _script(tmp_path, stages: str, code: int = 0, script: Path = SCRIPT, then: str = ""
            ) -> tuple[int, list[list[str]]]:
    """Run `script` with `bench` replaced by a recorder that exits `code` on `run`, after running
    the shell command `then`."""
    log = tmp_path / "calls"
    fake = tmp_path / "bench"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n{then}\n[ "$1" = run ] && exit {code}\nexit 0\n')
    fake.chmod(0o755)
    env = {**os.environ, "BENCH": str(fake), "PYTHON": sys.executable, "OUT": str(tmp_path / "out"),
           "STAGES": stages}
    r = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=120)
    calls = [shlex.split(line) for line in log.read_text().splitlines()] if log.exists() else []
    return r.returncode, calls


def _option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def test_every_stage_runs_its_suite_with_methods_that_exist(tmp_path):
    rc, calls = _script(tmp_path, "paper,cv,ladder,ablations,cost,llm,pack,report")
    assert rc == 0
    runs = [c for c in calls if c[0] == "run"]
    suites = {_option(c, "--suite") for c in runs}
    assert suites == {"paper", "cv", "ladder", "cost"}
    named = {m for c in runs for m in _option(c, "--method").split(",")}
    assert named <= set(methods())
    assert {"smac-bb-pool", "smac-mf-pool", "botorch-mf", "optuna-tpe", "autollmresearch",
            "autollmresearch-no-risk", "autollmresearch-no-cautious", "autollmresearch-no-rl",
            "smollm2-135m-grpo"} <= named
    assert "gpt-5" not in named  # paid APIs
    paper = {m for c in runs if _option(c, "--suite") == "paper" for m in _option(c, "--method").split(",")}
    folds = {m for c in runs if _option(c, "--suite") != "paper" for m in _option(c, "--method").split(",")}
    assert "autollmresearch-xfamily" in paper - folds  # its shipped checkpoint; per cv fold: every task
    assert {"smac-hpo", "smac-bb", "smac-mf"} <= paper  # the library's maximiser, beside `all`'s
    assert [c[0] for c in calls[-2:]] == ["pack", "report"]
    when, commit, stages, tasks = (tmp_path / "out" / "COMMIT").read_text().splitlines()[-1].split()
    assert stages == "stages=paper,cv,ladder,ablations,cost,llm,pack,report" and tasks == "tasks=all"


def test_some_tasks_and_a_record_of_each_invocation(tmp_path, monkeypatch):
    monkeypatch.setenv("TASKS", "sft_lora,grpo")
    _script(tmp_path, "cv")
    rc, calls = _script(tmp_path, "ladder")
    assert rc == 0 and {_option(c, "--task") for c in calls} == {"sft_lora,grpo"}
    lines = (tmp_path / "out" / "COMMIT").read_text().splitlines()
    assert [line.split()[2:] for line in lines] == [["stages=cv", "tasks=sft_lora,grpo"],
                                                    ["stages=ladder", "tasks=sft_lora,grpo"]]


def test_some_methods_run_alone_and_are_recorded(tmp_path, monkeypatch):
    monkeypatch.setenv("METHODS", "random,nap")
    rc, calls = _script(tmp_path, "paper,cv,cost")
    runs = {_option(c, "--suite"): _option(c, "--method") for c in calls if c[0] == "run"}
    assert rc == 0 and runs == {"paper": "random,nap", "cv": "random,nap", "cost": "random,nap"}
    assert (tmp_path / "out" / "COMMIT").read_text().split()[-1] == "methods=random,nap"


@pytest.mark.parametrize(("code", "expected", "n_runs"), [(1, 1, 3), (2, 2, 1)])
def test_failed_episodes_go_on_and_user_errors_stop(tmp_path, code, expected, n_runs):
    rc, calls = _script(tmp_path, "paper,cv,ladder", code)
    assert rc == expected
    assert sum(c[0] == "run" for c in calls) == n_runs


def test_editing_the_script_while_it_runs_changes_nothing(tmp_path):
    """Bash reads a script as it goes; this one is a single block, read whole before it starts. Here
    every `bench` call overwrites the file in place (same size, comments only): every stage still runs."""
    copy = tmp_path / "repo" / "scripts" / SCRIPT.name
    copy.parent.mkdir(parents=True)
    copy.write_text(SCRIPT.read_text())
    size = copy.stat().st_size
    rewrite = f"printf '%{size}s' '' | tr ' ' '#' | dd of={copy} conv=notrunc status=none"
    rc, calls = _script(tmp_path, "paper,cv,ladder,pack,report", script=copy, then=rewrite)
    assert copy.read_text() == "#" * size  # it was rewritten under the running script
    assert rc == 0 and [c[0] for c in calls] == ["run", "run", "run", "pack", "report"]
