"""Every method preset runs a short episode on real data; what it runs comes from the table."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from bench.episode import run_episode
from bench.errors import BenchError
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.methods import methods, resolve_methods, skipped_by_all
from bench.store import EpisodeKey, Store
from tests.helpers import with_presets

SLOW = {"smac-bb"}  # seconds per ask on 17 dimensions
PRESETS = [pytest.param(m, marks=pytest.mark.slow) if m in SLOW else m
           for m, spec in methods().items()
           if not spec.missing() and not spec.learned and spec.family != "llm"]


@pytest.mark.parametrize("method", PRESETS)
def test_preset_runs_a_short_episode(tmp_path, method):
    task = load_task("data_mixture")
    key = EpisodeKey("s", task.name, method, "pile_cc", "trials", 3, 0)
    store = Store(tmp_path)
    summary = run_episode(key, task, methods()[method], store)
    assert summary.trials == 3 and summary.target_trials == 3, summary.failed
    scores = summary.scores
    assert summary.recommend_value is not None and summary.best == scores["value"]
    assert summary.best >= task.scorer("pile_cc").optimum and 0 <= scores["pregret"] < 1
    pool = task.problem("pile_cc", Budget("trials", 3)).candidates()
    for line in store.trial_log(key).read_text().splitlines():
        row = json.loads(line)
        assert row["ask_seconds"] >= 0
        assert (pool == pd.Series(row["config"])).all(axis=1).any()


@pytest.fixture
def misspelled(tmp_path, monkeypatch):
    """The project's configs plus a preset whose parameter is misspelled (`top-k` for `top_k`)."""
    yield from with_presets(tmp_path, monkeypatch, typo={
        "class": "baselines.extrapolate:Extrapolate", "family": "heuristic", "in_all": False,
        "params": {"top-k": 3}})


def test_a_misspelled_preset_parameter_is_a_config_error(misspelled, tmp_path):
    """Catches a preset key the class does not take failing every episode as a method failure
    (a scored, silent result) instead of stopping the run with one message and exit 2."""
    with pytest.raises(BenchError, match=r"typo: unknown parameter\(s\) \['top-k'\].*top_k"):
        resolve_methods("typo")
    assert resolve_methods("extrapolate") == ["extrapolate"]  # the real preset passes
    r = subprocess.run([sys.executable, "-c", "from bench.cli import main; main()", "run", "--task",
                        "data_mixture", "--method", "random,typo", "--suite", "quick", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "top-k" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.done.json"))


def test_a_user_presets_file_merges_over_the_built_in_ones(tmp_path):
    """`--methods FILE` / `$BENCH_METHODS`: a name given again replaces the built-in preset, in its
    place; new names come after the built-in ones."""
    from bench.methods import PRESETS_ENV, using

    path = tmp_path / "mine.yaml"
    path.write_text("extrapolate:\n  class: baselines.extrapolate:Extrapolate\n  family: heuristic\n"
                    "  params: {top_k: 5}\nmine:\n  class: baselines.centroid:Centroid\n  family: user\n")
    built_in = list(methods())
    with using(methods_file=path):
        assert os.environ[PRESETS_ENV] == str(path.resolve())  # what worker processes inherit
        assert list(methods()) == [*built_in, "mine"] and methods()["extrapolate"].params == {"top_k": 5}
        assert resolve_methods("mine,extrapolate") == ["mine", "extrapolate"]
    assert methods()["extrapolate"].params == {"top_k": 3} and "mine" not in methods()


TOY = '''
from baselines.random_search import RandomSearch

class Mine(RandomSearch):
    """Uniform draws, registered by an installed package."""

PRESET = {"class": "baselines.extrapolate:Extrapolate", "family": "heuristic", "params": {"top_k": 2}}
'''


@pytest.fixture
def toy_package(tmp_path, monkeypatch):
    """An installed distribution (metadata + module on sys.path) registering three methods."""
    info = tmp_path / "toy_methods-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-methods\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[llmconfig_bench.methods]\nmine = toy_methods:Mine\n"
                                           "tuned = toy_methods:PRESET\nbroken = no_such_module_x:Opt\n")
    (tmp_path / "toy_methods.py").write_text(TOY)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "toy_methods", raising=False)
    monkeypatch.setenv("PYTHONPATH", os.environ.get("PYTHONPATH", ""))  # restored: resolving exports it
    methods.cache_clear()
    yield
    methods.cache_clear()


def test_an_installed_package_registers_methods_through_entry_points(toy_package):
    found = methods()
    mine, tuned, broken = found["mine"], found["tuned"], found["broken"]
    assert (mine.cls, mine.family, mine.description) == \
        ("toy_methods:Mine", "user", "Uniform draws, registered by an installed package.")
    assert (tuned.cls, tuned.params) == ("baselines.extrapolate:Extrapolate", {"top_k": 2})
    assert resolve_methods("mine,tuned") == ["mine", "tuned"]
    assert "no module named 'no_such_module_x'" in broken.missing()[0]
    assert "broken" in skipped_by_all() and "broken" not in resolve_methods("all")


def test_method_params_reach_a_module_class_method_and_its_workers():
    """`--method-params JSON`: the parameters of the one `module:Class` in `--method`, exported for
    the worker processes; anything else is one message."""
    from bench.methods import PARAMS_ENV, method, using

    ref = "baselines.extrapolate:Extrapolate"
    with using(method_params='{"top_k": 2}', method_arg=f"random,{ref}"):
        assert json.loads(os.environ[PARAMS_ENV]) == {ref: {"top_k": 2}}
        assert method(ref).params == {"top_k": 2} and method(ref).family == "user"
    assert PARAMS_ENV not in os.environ and method(ref).params == {}
    for params, arg, message in [("[1]", ref, "must be a JSON object"),
                                 ('{"top_k": 2}', f"{ref},baselines.centroid:Centroid", "found " + ref),
                                 ('{"top_k": 2}', "extrapolate", "found none")]:
        with pytest.raises(BenchError, match=message), using(method_params=params, method_arg=arg):
            pass


def test_a_variant_is_a_preset_of_the_same_class_whose_name_extends_another(tmp_path):
    """`bench.methods.variants`: what the report compares with its preset; a name that extends
    another but runs another class is no variant, nor is a `module:Class`."""
    from bench.methods import using, variants

    names = ["autollmresearch", "autollmresearch-no-rl", "optuna-tpe", "optuna-tpe-warm", "random",
             "extrapolate-wide", "extrapolate", "baselines.random_search:RandomSearch"]
    assert variants(names) == {"autollmresearch-no-rl": "autollmresearch", "optuna-tpe-warm": "optuna-tpe"}
    path = tmp_path / "mine.yaml"
    path.write_text("extrapolate-wide:\n  class: baselines.extrapolate:Extrapolate\n  family: heuristic\n"
                    "  params: {top_k: 9}\n"
                    "random-mine:\n  class: baselines.centroid:Centroid\n  family: user\n")
    with using(methods_file=path):
        assert variants([*names, "random-mine"]) == {
            "autollmresearch-no-rl": "autollmresearch", "optuna-tpe-warm": "optuna-tpe",
            "extrapolate-wide": "extrapolate"}
