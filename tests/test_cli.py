"""The `bench` command: user errors end with one line and exit code 2, losing nothing."""

import subprocess
import sys

import pandas as pd
import pytest

BENCH = [sys.executable, "-c", "from bench.cli import main; main()"]


def bench(*args, **kw):
    return subprocess.run([*BENCH, *args], capture_output=True, text=True, timeout=300, **kw)


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "nope", "--method", "random"], "unknown task 'nope'"),
    (["run", "--task", "data_mixture", "--method", "nope"], "unknown method 'nope'"),
    (["run", "--task", "data_mixture", "--method", ","], "empty method list"),
    (["run", "--task", "data_mixture", "--method", "random", "--budget", "0"],
     "--budget must be a whole number"),
    (["run", "--task", "data_mixture", "--method", "random", "--suite", "nosuch"], "unknown suite"),
    (["run", "--task", "data_mixture", "--method", "random", "--budget", "2.5"],
     "--budget must be a whole number of trials"),
    (["run", "--task", "data_mixture", "--method", "random", "--experiments", "nosuch"],
     "no test experiment named 'nosuch' in data_mixture; known: "),
    (["leaderboard", "--metric", "foo"], "unknown metric 'foo'; known: pregret, nregret"),
    (["plot", "--metric", "foo"], "unknown metric 'foo'; known: pregret, nregret"),
    (["report", "--metric", "regret"], "unknown metric 'regret'; known: pregret, nregret"),
    # a user's optimizer, `module:Class`: a misspelled class or module, its parameters, its presets
    (["run", "--task", "data_mixture", "--method", "random,baselines.random_search:RandomSerch"],
     "module baselines.random_search has no 'RandomSerch'; did you mean "
     "baselines.random_search:RandomSearch?"),
    (["run", "--task", "data_mixture", "--method", "no_such_module:MyOpt"],
     "method no_such_module:MyOpt: no module named 'no_such_module' (class no_such_module:MyOpt); it must be "
     "importable here"),
    (["run", "--task", "data_mixture", "--method", "bench.paths:Path"], "is not an Optimizer subclass"),
    (["run", "--task", "data_mixture", "--method", "baselines.extrapolate:Extrapolate", "--method-params",
      '{"top-k": 3}'], "unknown parameter(s) ['top-k'] for baselines.extrapolate:Extrapolate; it takes: "
                       "top_k"),
    (["run", "--task", "data_mixture", "--method", "baselines.extrapolate:Extrapolate", "--method-params",
      "{top_k: 3}"], "--method-params is not valid JSON"),
    (["run", "--task", "data_mixture", "--method", "random", "--method-params", '{"top_k": 3}'],
     "--method-params gives the parameters of one module:Class method in --method (found none)"),
    (["run", "--task", "data_mixture", "--method", "random", "--methods", "no/such.yaml"],
     "--methods no/such.yaml: no such file"),
])
def test_bad_input_one_line_exit_2(args, message, tmp_path):
    results = "--runs" if args[0] in ("leaderboard", "plot") else "--out"  # read, or created
    r = bench(*args, results, str(tmp_path / "out"))
    assert r.returncode == 2, r.stderr
    assert message in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["run", "--dry-run"], "No such option: --dry-run"),
    (["run", "--task", "data_mixture", "--seeds", "x"], "Invalid value for '--seeds'"),
    (["nosuch"], "No such command 'nosuch'"),
])
def test_usage_errors_are_one_message_exit_2(args, message):
    """Typer's own usage errors (it vendors click): its usage lines and one error, no traceback."""
    r = bench(*args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_python_m_bench_is_bench():
    for module in ("bench", "bench.cli"):
        r = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0 and "Usage:" in r.stdout and " run " in r.stdout, (module, r.stderr)


def test_a_user_presets_file_is_validated_like_the_built_in_ones(tmp_path):
    presets = tmp_path / "methods.yaml"
    presets.write_text("mine:\n  class: baselines.random_search:RandomSearch\n  familly: baseline\n")
    r = bench("methods", "--methods", str(presets))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"method presets {presets}: mine: family: Field required; familly: Extra inputs" in r.stderr


def test_unreadable_suite_yaml(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbudgets: [1, 2\n")
    r = bench("run", "--task", "data_mixture", "--method", "random", "--suite", str(bad))
    assert r.returncode == 2 and "not valid YAML" in r.stderr and "Traceback" not in r.stderr


def test_unwritable_out(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = bench("run", "--task", "data_mixture", "--method", "random", "--suite", "quick",
              "--out", str(blocker / "out"))
    assert r.returncode == 2 and "cannot write to output directory" in r.stderr


def test_run_leaderboard_plot_and_nothing_lost(tmp_path):
    out = tmp_path / "out"
    r = bench("run", "--task", "data_mixture", "--method", "random,best-prior", "--suite", "quick",
              "--seeds", "1", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    markers = sorted(out.rglob("*.done.json"))
    assert len(markers) == 2 * 2 * 2  # methods x experiments x budgets
    before = {p: p.read_text() for p in markers}
    r = bench("run", "--task", "data_mixture", "--method", "nope", "--out", str(out))
    assert r.returncode == 2
    assert {p: p.read_text() for p in sorted(out.rglob("*.done.json"))} == before
    r = bench("leaderboard", "--runs", str(out))
    assert r.returncode == 0 and (out / "leaderboard.csv").is_file()
    header = (out / "leaderboard.csv").read_text().splitlines()[0].split(",")
    assert {"task", "method", "budget", "metric", "pregret_mean", "pregret_lo", "pregret_hi", "nregret_mean",
            "nregret_sem", "rank_mean", "episodes", "experiments", "few_experiments",
            "diverged_rate"} <= set(header)
    text = " ".join(r.stdout.split())
    assert "pregret mean [interval]" in text and "range of 2 exps" in text  # quick: 2 experiments
    assert "Tables, ranks and figures use pregret" in text
    key = ["suite", "task", "budget_kind", "budget", "method"]
    board = pd.read_csv(out / "leaderboard.csv").set_index(key).sort_index()
    assert set(board.metric) == {"pregret"}
    r = bench("leaderboard", "--runs", str(out), "--metric", "nregret")
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())
    assert "nregret mean [interval]" in text and "nregret: the gap" in text
    by_nregret = pd.read_csv(out / "leaderboard.csv").set_index(key).sort_index()
    assert set(by_nregret.metric) == {"nregret"}  # ranks on nregret; every statistic as before
    ranked = ["metric", "rank_mean", "win_vs_centroid"]
    pd.testing.assert_frame_equal(by_nregret.drop(columns=ranked), board.drop(columns=ranked))
    r = bench("plot", "--runs", str(out))
    assert r.returncode == 0
    assert (out / "figures" / "regret_quick.png").stat().st_size > 10_000
    assert (out / "figures" / "regret_quick.pdf").is_file()


def test_corrupt_marker_is_reported(tmp_path):
    out = tmp_path / "out"
    bench("run", "--task", "data_mixture", "--method", "random", "--suite", "quick", "--seeds", "1",
          "--out", str(out), "--quiet")
    marker = next(out.rglob("*.done.json"))
    marker.write_text("{not json")
    r = bench("leaderboard", "--runs", str(out))
    assert r.returncode == 2 and "is corrupt" in r.stderr and marker.name in r.stderr


@pytest.mark.parametrize("command", ["leaderboard", "plot"])
def test_runs_names_the_results_read_and_out_is_its_deprecated_spelling(command, tmp_path):
    empty = tmp_path / "empty"
    r = bench(command, "--runs", str(empty))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: no completed episodes under {empty}; run `bench run` first"
        + (" (or give --task)" if command == "plot" else "")]
    old = bench(command, "--out", str(empty))  # the spelling before --runs, for one release
    assert old.returncode == 2 and old.stderr.strip().splitlines() == [
        "--out is deprecated for reading results; use --runs", *r.stderr.strip().splitlines()]
    same = bench(command, "--runs", str(empty), "--out", str(empty))
    assert same.returncode == 2 and same.stderr == old.stderr
    both = bench(command, "--runs", str(empty), "--out", str(tmp_path / "other"))
    assert both.returncode == 2 and "name different results directories" in both.stderr
    assert len(both.stderr.strip().splitlines()) == 1
    shown = bench(command, "--help").stdout
    assert "--runs" in shown and "--out" not in shown
