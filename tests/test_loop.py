"""One loop, one set of rules: every consumer of an optimizer runs it through `bench.loop.run`
under `bench.gym.rules`; the method factory builds and never trains; the summary is typed."""

import json

import numpy as np
import pytest

from agents.policy.episodes import TrainingEpisode
from agents.policy.teachers import play
from bench.episode import run_episode
from bench.gym import rules
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.task import Prior, method_seed
from bench.methods import MethodSpec, methods
from bench.store import EpisodeKey, Store
from bench.summary import EpisodeSummary
from bench.training import TrainingData, checkpoint_for

LEARNED = {"metabo", "fsbo", "nap", "optformer", "autollmresearch"}


def test_a_teacher_runs_the_episode_the_harness_runs(tmp_path):
    """The policy's teacher loop and the benchmark's episode give a method the same candidates."""
    task = load_task("data_mixture")
    data = TrainingData.of(task)
    exp, seed = data.fit[0], 11
    for name in ("random", "best-prior", "centroid"):
        ep = TrainingEpisode.of(data, exp, Prior("cheaper"), 4, seed)
        chosen = play(ep, methods()[name].make(ep.problem, method_seed(seed)))
        key = EpisodeKey("s", task.name, name, exp, "trials", 4, seed)
        store = Store(tmp_path)
        run_episode(key, data.task, methods()[name], store)
        log = [json.loads(line) for line in store.trial_log(key).read_text().splitlines()]
        pool = ep.problem.arrays()
        assert [pool.records[c] for c in chosen] == [t["config"] for t in log], name


def test_the_rules_count_budgets_the_same_everywhere():
    """A cost budget of exactly k runs buys k runs (float sums included), and not k + 1."""
    costs = np.array([0.1, 0.7, 3.3])
    left = 3 * 3.3 - sum([3.3, 3.3])
    assert rules.fits(3.3, left) and not rules.fits(3.3, left - 3.3)
    assert rules.fits(np.array([3.3, 9.9]), np.array([left, left])).tolist() == [True, False]
    assert rules.horizon(Budget("cost", 3), costs) == 99 and rules.horizon(Budget("trials", 3), costs) == 3
    assert rules.query_limit(Budget("cost", 3), costs) >= rules.horizon(Budget("cost", 3), costs)


def test_the_factory_builds_and_never_trains(cache):
    for name, spec in methods().items():
        if spec.missing():
            continue
        assert spec.learned == (name in LEARNED or spec.family == "policy"), name
    task = load_task("sft_lora")
    problem = task.problem(task.split("test")[0], Budget("trials", 2))
    with pytest.raises(ValueError, match="needs its checkpoint"):
        methods()["metabo"].make(problem, 0)
    assert not (cache / "checkpoints").exists()  # nothing was trained


def test_a_learned_method_gets_the_checkpoint_its_caller_resolves(cache):
    task = load_task("sft_lora")
    spec = MethodSpec(name="learned-centre", cls="tests.helpers:LearnedCentre", family="learned-bo")
    problem = task.problem(task.split("test")[0], Budget("trials", 2))
    checkpoint = checkpoint_for(spec, task)
    assert spec.make(problem, 0, checkpoint).checkpoint is checkpoint


def test_summary_round_trips_and_reads_older_markers(tiny_task, tmp_path):
    spec = MethodSpec(name="random", cls="baselines.random_search:RandomSearch", family="baseline")
    key = EpisodeKey("s", "tiny", "random", "b", "trials", 3, 0)
    summary = run_episode(key, tiny_task, spec, Store(tmp_path))
    record = json.loads(json.dumps(summary.to_json()))
    assert EpisodeSummary.from_json(record) == summary
    older = {k: v for k, v in record.items() if k not in ("gap", "fold", "setup_seconds")}
    assert EpisodeSummary.from_json({**older, "retired": 1}).fold is None
    [(stored_key, stored)] = Store(tmp_path).summaries()
    assert stored_key == key and stored.scores == summary.scores
