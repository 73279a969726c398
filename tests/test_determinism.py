"""Same seed, same trials; the random choices flow from the episode seed."""

import json

from bench.episode import run_episode
from bench.gym.registry import load_task
from bench.methods import methods
from bench.store import EpisodeKey, Store


def _trials(tmp_path, method, seed, name):
    task = load_task("data_mixture")
    key = EpisodeKey("s", task.name, method, "pile_cc", "trials", 4, seed)
    store = Store(tmp_path / name)
    run_episode(key, task, methods()[method], store)
    rows = [json.loads(x) for x in store.trial_log(key).read_text().splitlines()]
    return [(r["config"], r["value"]) for r in rows]


def test_same_seed_same_trials(tmp_path):
    for method in ("random", "regmix"):
        assert _trials(tmp_path, method, 3, "a") == _trials(tmp_path, method, 3, "b")


def test_seed_changes_random_trials(tmp_path):
    assert _trials(tmp_path, "random", 1, "a") != _trials(tmp_path, "random", 2, "b")
