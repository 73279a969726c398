"""NAP (baselines/nap.py): determinism and train-only data, episodes, learning, NAP's mask and features."""


import numpy as np
import torch

from baselines.nap import NAP, NAPNet, Settings, normal_scores, prior_tokens, select_prior
from bench.episode import run_episode
from bench.gym.env import EpisodeBatch
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.task import Prior
from bench.loop import play
from bench.methods import methods
from bench.optimizer import Checkpoint
from bench.store import EpisodeKey, Store
from bench.training import TrainingData, train
from tests.helpers import noisy_test_experiments

TINY = {"train_steps": 3, "batch": 4, "d_model": 8, "heads": 2, "layers": 1, "ff": 16, "prior_cap": 32}


def _spec(**params):
    return methods()["nap"].model_copy(update={"params": {**TINY, **params}})


def test_training_is_deterministic_and_never_reads_test_experiments(cache):
    task = load_task("sft_lora")
    first, _ = train(_spec(), task, force=True)
    again, _ = train(_spec(), task, force=True)
    noisy, _ = train(_spec(), noisy_test_experiments(task), force=True)
    assert first.meta["digest"] == again.meta["digest"] == noisy.meta["digest"]
    assert np.isfinite(first.meta["validation_pregret"])
    other, _ = train(_spec(), task, seed=1, force=True)
    assert other.meta["digest"] != first.meta["digest"]


def test_episode_completes_and_asks_only_untried_candidates(cache, tmp_path, monkeypatch):
    task = load_task("pretrain_hparams")
    train(_spec(), task)  # trained (and validated) before the asks are watched
    asked = []
    original = NAP.ask

    def checked_ask(self):
        query = original(self)
        assert query.fidelity == self.problem.target and query.candidate in self.untried_ids()
        asked.append(query.candidate)
        return query

    monkeypatch.setattr(NAP, "ask", checked_ask)
    key = EpisodeKey("t", task.name, "nap", task.split("test")[0], "trials", 5, 0)
    summary = run_episode(key, task, _spec(), Store(tmp_path / "out"), prior=Prior("cheaper", 3.0, 3.0))
    assert summary.failed is None and summary.target_trials == 5
    assert len(set(asked)) == 5


def _first_pick_nregret(data, checkpoint, seeds=range(4)) -> float:
    """Mean nregret (the Scorer's) of the first target trial over held-out episodes of every train
    experiment."""
    scores = []
    for exp in data.fit + data.validation:
        scorer = data.task.scorer(exp)
        for prior in data.priors:
            for s in seeds:
                problem = data.task.problem(exp, Budget("trials", 1), prior, seed=50_000 + s)
                oracle = data.task.oracle(exp, 50_000 + s)
                best = play(NAP(problem, s, checkpoint=checkpoint), oracle, problem)
                scores.append(float(scorer.nregret(best)))
    return float(np.mean(scores))


def test_training_learns_to_pick_good_first_trials():
    task = load_task("architecture")
    data = TrainingData.of(task)
    params = {**TINY, "d_model": 16, "prior_cap": 64, "batch": 8}
    untrained = Checkpoint(NAP.meta_train(data, 0, lambda _: None, **{**params, "train_steps": 0}), {})
    trained = Checkpoint(NAP.meta_train(data, 0, lambda _: None, **{**params, "train_steps": 80}), {})
    before, after = _first_pick_nregret(data, untrained), _first_pick_nregret(data, trained)
    assert after < 0.6 * before, (before, after)


def test_candidates_attend_to_history_only():
    torch.manual_seed(0)
    net = NAPNet(10, 3, Settings(d_model=16, heads=2, layers=2, ff=16)).eval()
    hist, cand = torch.randn(1, 6, 10), torch.randn(1, 5, 10)
    valid = torch.ones(1, 6, dtype=torch.bool)
    with torch.no_grad():
        full = net(hist, valid, cand)
        alone = net(hist, valid, cand[:, 2:3])  # the other candidates removed
        order = torch.tensor([4, 1, 3, 0, 2])
        shuffled = net(hist[:, [5, 2, 0, 1, 4, 3]], valid, cand[:, order])  # history order is a set
        padded = net(torch.cat([hist, 50 * torch.randn(1, 3, 10)], 1),  # padding rows are ignored
                     torch.cat([valid, torch.zeros(1, 3, dtype=torch.bool)], 1), cand)
        moved = net(hist[:, :5], valid[:, :5], cand)
    for out, a, s, p, m in zip(full, alone, shuffled, padded, moved, strict=True):
        torch.testing.assert_close(a[0, 0], out[0, 2])
        torch.testing.assert_close(s[0], out[0, order])
        torch.testing.assert_close(p, out)
        assert not torch.allclose(m, out)  # a history token matters


def test_prior_subsample_keeps_the_best_and_the_most_expensive_runs():
    rng = np.random.default_rng(0)
    levels = rng.integers(0, 3, 300)
    scores = rng.normal(size=300)
    keep = select_prior(levels, scores, cap=40, best_share=0.25)
    assert len(keep) == len(set(keep)) == 40
    assert set(np.argsort(-scores)[:10]) <= set(keep)
    rest = np.setdiff1d(keep, np.argsort(-scores)[:10])
    assert (levels[rest] == 2).all()
    assert list(select_prior(levels[:30], scores[:30], 40, 0.25)) == list(range(30))
    z = normal_scores(np.array([3.0, 1.0, 2.0, 2.0]))
    assert z[1] < z[2] == z[3] < z[0] and abs(z.sum()) < 1e-12


def test_asking_sees_the_features_training_sees():
    """The optimizer's prior tokens equal those built from the Gymnasium episodes' arrays."""
    task = load_task("data_mixture")
    data = TrainingData.of(task)
    settings = Settings(**TINY)
    state = NAP.meta_train(data, 0, lambda _: None, **{**TINY, "train_steps": 0})
    exp, seed = data.fit[0], 123
    for prior in data.priors:
        episodes = EpisodeBatch(data.task, exp, Budget("trials", 3), prior, 1)
        episodes.reset([0], [seed])
        o = episodes.obs
        m = o["prior_mask"][0].astype(bool)
        from_env = prior_tokens(o["prior_x"][0][m], o["prior_fidelity"][0][m].astype(int),
                                o["prior_value"][0][m], episodes.descriptors, settings)
        problem = data.task.problem(exp, Budget("trials", 3), prior, seed)
        nap = NAP(problem, 0, checkpoint=Checkpoint(state, {}))
        np.testing.assert_allclose(nap.prior, from_env, atol=1e-6)
        np.testing.assert_allclose(nap.candidates[:, : task.encoder.width], o["candidates"][0, -1, :64])
        assert len(nap.prior) == TINY["prior_cap"]
