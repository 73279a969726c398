"""The package as a researcher installs it: a wheel built from the project's files, installed into a
fresh environment outside the checkout, runs `bench methods` and a short run there. Method presets,
suites and prices come from the installed package's data; a user's optimizer comes in as
`module:Class` from the working directory and as an installed package's entry point
(`examples/my_optimizer`). Offline and fast: no build isolation, no dependencies installed (the
fresh environment sees the project environment's site-packages, but not its editable install)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "my_optimizer"
pytestmark = pytest.mark.slow


def _sh(*args, cwd=None, env=None, timeout=300) -> subprocess.CompletedProcess:
    r = subprocess.run([str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, args))}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _wheel(src: Path, into: Path) -> Path:
    """The wheel of the project at `src`, built with this environment's setuptools."""
    _sh(sys.executable, "-m", "pip", "wheel", src, "--no-deps", "--no-build-isolation", "--no-index",
        "-q", "-w", into)
    (wheel,) = into.glob("*.whl")
    return wheel


def test_a_wheel_installed_outside_the_checkout_runs(tmp_path):
    src = tmp_path / "llmconfig_bench"  # copies: a build writes build/ and *.egg-info beside the sources
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src)
    skip = shutil.ignore_patterns("__pycache__", "build", "*.egg-info")
    for package in ("bench", "baselines", "agents"):
        shutil.copytree(ROOT / package, src / package, ignore=skip)
    example = shutil.copytree(EXAMPLE, tmp_path / "my_optimizer", ignore=skip)
    project, example = _wheel(src, tmp_path / "project"), _wheel(example, tmp_path / "example")

    venv = tmp_path / "venv"
    _sh(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site = Path(_sh(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # The dependencies from this environment: its site-packages on the path, its .pth files (the
    # editable install of this checkout) not run.
    (site / "deps.pth").write_text("\n".join(dict.fromkeys(
        [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])) + "\n")
    _sh(python, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed", "-q", project,
        example)

    work = tmp_path / "work"  # outside the checkout; no PYTHONPATH, no configs override
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "BENCH_CONFIGS", "BENCH_METHODS", "BENCH_METHOD_PARAMS")}
    where = _sh(python, "-c", "import bench, baselines, agents, bench.paths as p, bench.training as t, "
                "agents.llm.cache as c; print(bench.__file__, baselines.__file__, agents.__file__, "
                "t.SHIPPED, c.SHIPPED, p.configs_dir())", cwd=work, env=env).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where
    assert (Path(where[-1]) / "suites" / "quick.yaml").is_file()
    shipped = {p.relative_to(ROOT / "bench" / "checkpoints") for p in ROOT.glob("bench/checkpoints/*/*.pt")}
    assert shipped and {p.relative_to(where[3]) for p in Path(where[3]).rglob("*.pt")} == shipped
    replays = {p.name for p in (ROOT / "agents" / "llm" / "replays").glob("*.jsonl.gz")}
    assert replays and {p.name for p in Path(where[4]).glob("*.jsonl.gz")} == replays

    listed = _sh(venv / "bin" / "bench", "methods", cwd=work, env=env).stdout
    assert "random" in listed and "extrapolate" in listed and "topk-centre" in listed  # entry point
    shutil.copy(EXAMPLE / "my_optimizer.py", work / "mine.py")  # `module:Class` from the working directory
    run = _sh(venv / "bin" / "bench", "run", "--task", "sft_lora", "--method",
              "random,topk-centre,mine:TopKCentre", "--suite", "quick", "--seeds", "1", "--budget", "1",
              "--out", "runs", "--quiet", cwd=work, env=env)
    assert "failed" not in run.stderr, run.stderr
    board = _sh(python, "-m", "bench", "leaderboard", cwd=work, env=env).stdout
    assert "mine:TopKCentre" in board and "topk-centre" in board
    assert (work / "runs" / "leaderboard.csv").is_file()
