"""Episodes that break: scored as failures, recorded with their error, never stopping the others."""

import pytest

from bench.episode import run_episode
from bench.gym.problem import Query
from bench.methods import MethodSpec
from bench.metrics import episodes_frame, leaderboard
from bench.optimizer import Optimizer
from bench.store import EpisodeKey, Store


class BreaksOnSecondAsk(Optimizer):
    def ask(self) -> Query:
        if self.history:
            raise RuntimeError("numerical trouble")  # e.g. a torch/gpytorch RuntimeError
        return self.query(self.random_candidate())


class RecommendBreaks(Optimizer):
    def ask(self) -> Query:
        return self.query(self.random_candidate())

    def recommend(self):
        raise RuntimeError("cholesky failed")


def _run(tiny_task, tmp_path, target, budget=3, seed=0):
    spec = MethodSpec(name=target.lower(), cls=f"tests.test_episode:{target}", family="test")
    key = EpisodeKey("s", "tiny", spec.name, "b", "trials", budget, seed)
    store = Store(tmp_path)
    return key, store, run_episode(key, tiny_task, spec, store)


@pytest.mark.parametrize("target", ["BreaksOnSecondAsk", "RecommendBreaks"])
def test_errors_are_scored_failures(tiny_task, tmp_path, target):
    key, store, summary = _run(tiny_task, tmp_path, target)
    error = "numerical trouble" if target == "BreaksOnSecondAsk" else "cholesky failed"
    assert summary.failed == f"RuntimeError: {error}"
    assert store.is_done(key) and store.is_failed(key)
    assert "Traceback" in store.error_file(key).read_text()
    row = episodes_frame(store.summaries()).iloc[0]
    assert row.failed and row.score == summary.scores["value"] == pytest.approx(3.6)  # worst target run
    assert row.score == tiny_task.scorer("b").worst and row.pregret == 1.0 and not row.diverged


def test_a_failure_cannot_rank_first(tiny_task, tmp_path):
    """The failed method had the better trial before it broke; it still ranks last."""
    _run(tiny_task, tmp_path, "BreaksOnSecondAsk")
    spec = MethodSpec(name="random", cls="baselines.random_search:RandomSearch", family="baseline")
    run_episode(EpisodeKey("s", "tiny", "random", "b", "trials", 3, 0), tiny_task, spec, Store(tmp_path))
    board = leaderboard(episodes_frame(Store(tmp_path).summaries())).set_index("method")
    assert board.loc["breaksonsecondask", "rank_mean"] == 2.0
    assert board.loc["breaksonsecondask", "failed"] == 1 and board.loc["random", "failed"] == 0
