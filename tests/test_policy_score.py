"""The policy is trained, validated and selected on the score it is judged by (pregret): its reward
is minus the harness's reported score, a diverged pick costs what the leaderboard charges, and
its selection episodes are grouped, numerous and protocol-matched; several tasks weigh the same."""

from collections import Counter

import numpy as np
import pytest
import torch

from agents.policy import distill, rl
from agents.policy.episodes import (
    VALIDATION_SEEDS,
    TrainingEpisode,
    draw,
    episode_reward,
    risk_loss,
    rollout,
    validation_set,
)
from agents.policy.model import PolicyNet
from agents.policy.trajectories import Step, Trajectory
from bench.episode import run_episode
from bench.gym.registry import load_task
from bench.gym.suites import load_suite
from bench.gym.task import Prior
from bench.methods import MethodSpec
from bench.numerics import torch_threads
from bench.optimizer import Optimizer
from bench.store import EpisodeKey, Store
from bench.training import TrainingData


class AskIds(Optimizer):
    """Asks the given target candidate ids, in order (they depend on the episode seed only)."""

    def __init__(self, problem, seed, ids=()):
        super().__init__(problem, seed)
        self.ids = [int(i) for i in ids]

    def ask(self):
        return self.query_candidate(self.ids[len(self.history)])


def reported(task, exp: str, prior: Prior, budget: int, seed: int, ids, tmp_path) -> dict:
    """The harness's scores of the episode (`run_episode`) in which `ids` are asked."""
    spec = MethodSpec(name="ask-ids", cls="tests.test_policy_score:AskIds", family="test",
                      params={"ids": [int(i) for i in ids]})
    key = EpisodeKey("t", task.name, spec.name, exp, "trials", budget, seed)
    summary = run_episode(key, task, spec, Store(tmp_path), prior)
    assert summary.failed is None and summary.target_trials == budget
    return summary.scores


@pytest.mark.parametrize("prior", [Prior("cheaper"), Prior("cheaper", gap=2.0, budget=3.0)])
def test_reward_is_minus_the_reported_score(prior, tmp_path):
    task = load_task("sft_lora")
    data = TrainingData.of(task)
    exp, seed, budget = data.fit[0], 123, 3
    ep = TrainingEpisode.of(data, exp, prior, budget, seed)
    torch.manual_seed(0)
    with torch.no_grad():
        played = rollout(PolicyNet(16, 2, 1, 32), ep, 1, None)
    ids = played.actions[0]
    assert len(set(ids.tolist())) == budget
    scores = reported(task, exp, prior, budget, seed, ids, tmp_path)
    assert episode_reward(played.pregret[0], 0.0) == -scores["pregret"]
    np.testing.assert_array_equal(played.pregret[0], scores["pregret_curve"])
    # shaping rewards reaching it sooner: minus the mean of the same curve
    assert episode_reward(played.pregret[0], 0.5) == pytest.approx(
        -scores["pregret"] - 0.5 * np.mean(scores["pregret_curve"]))


class Fixed(torch.nn.Module):
    """A 'network' whose greedy policy asks `ids` in order."""

    def __init__(self, ids, n: int):
        super().__init__()
        self.logit = torch.full((n,), -100.0)
        self.logit[list(ids)] = torch.arange(len(ids), 0, -1, dtype=torch.float32)

    def forward(self, tokens, valid, dist, cand):
        b, n = cand.shape[:2]
        zeros = torch.zeros(b, n)
        return self.logit.expand(b, n), zeros, zeros, zeros


def test_a_diverged_pick_costs_what_the_leaderboard_charges(tmp_path):
    task = load_task("grpo")
    data = TrainingData.of(task)
    exp = next(e for e in data.fit if task.diverged(e, task.experiment(e).target.name).any())
    ep = TrainingEpisode.of(data, exp, Prior("cheaper"), 1, 5)
    target = task.experiment(exp).target.name
    np.testing.assert_array_equal(ep.diverged, task.diverged(exp, target)[task.permutation(exp, target, 5)])
    pick = int(np.flatnonzero(ep.diverged)[0])
    with torch.no_grad():
        played = rollout(Fixed([pick], len(ep.values)), ep, 1, None)
    assert played.actions[0].tolist() == [pick]
    final = float(played.pregret[0, -1])
    assert final == ep.scorer.episode(float(ep.values[pick]), [float(ep.values[pick])])["pregret"]
    assert final >= ep.scorer.pregret(ep.values[~ep.diverged]).max() and final > 0.5
    scores = reported(task, exp, Prior("cheaper"), 1, 5, [pick], tmp_path)
    assert scores["diverged"] and episode_reward(played.pregret[0], 0.0) == -scores["pregret"]
    # the risk head's target: the pick's flag, as the harness's outcome reports it
    assert ep.oracle().evaluate(AskIds(ep.problem, 0, [pick]).ask()).diverged


def test_the_risk_head_learns_which_target_runs_diverge():
    """Distillation with `risk_weight` (and no other auxiliary loss) on grpo's train episodes,
    where about 30% of the target runs diverged: the BCE falls and the risk logits rank the
    diverged candidates above the others (AUC)."""
    data = TrainingData.of(load_task("grpo"))
    episodes = draw(data, np.random.default_rng(0), 4)
    assert all(0 < ep.diverged.mean() < 1 for ep in episodes)
    trajectories = [
        Trajectory(ep.key[1], ep.key[2], ep.key[3], ep.key[4], "random",
                   tuple(Step(int(c), float(ep.values[c]), "") for c in range(ep.horizon)), 0.0, ep.key[0])
        for ep in episodes]
    torch.manual_seed(0)
    net = PolicyNet(16, 2, 1, 32)

    def risks():
        with torch.no_grad():
            return [net(*ep.states([[]]))[3] for ep in episodes]

    before = np.mean([float(risk_loss(r, ep.risks())) for r, ep in zip(risks(), episodes, strict=True)])
    with torch_threads(1):
        distill.distill(net, {ep.key: ep for ep in episodes}, trajectories, 8, 5e-3, 0.0,
                        np.random.default_rng(0), risk_weight=1.0)
    after = risks()
    assert np.mean([float(risk_loss(r, ep.risks())) for r, ep in zip(after, episodes, strict=True)]) < before
    aucs = []
    for r, ep in zip(after, episodes, strict=True):
        rank = np.argsort(np.argsort(r[0].numpy())) + 1
        pos = ep.diverged.sum()
        aucs.append((rank[ep.diverged].sum() - pos * (pos + 1) / 2) / (pos * (~ep.diverged).sum()))
    assert np.mean(aucs) > 0.7


@pytest.mark.parametrize("name", ["pretrain_hparams", "data_mixture", "sft_lora", "architecture"])
def test_validation_experiments_are_whole_groups(name):
    task = load_task(name)
    train = set(task.split("train"))
    groups = {g: set(m) & train for g, m in task.groups().items() if set(m) & train}
    for seed in range(4):
        data = TrainingData.of(task, seed)
        assert set(data.fit) | set(data.validation) == train
        if len(groups) < 2:  # architecture: one group, the fit experiments validate
            assert data.validation == data.fit
            continue
        assert data.validation and not set(data.fit) & set(data.validation)
        for members in groups.values():
            assert members <= set(data.fit) or members <= set(data.validation)
        assert TrainingData.of(task, seed).validation == data.validation  # seeded


@pytest.mark.parametrize("name", ["sft_lora", "pretrain_hparams"])
def test_validation_set_covers_the_test_protocols_and_the_ladder(name):
    task = load_task(name)
    data = TrainingData.of(task)
    cells = Counter((ep.key[1], ep.key[2], ep.key[3]) for ep in validation_set(data))
    assert set(cells.values()) == {VALIDATION_SEEDS} and {b for _, _, b in cells} == {1, 3}
    assert {e for e, _, _ in cells} == set(data.validation)
    distances = set()
    for exp in data.validation:
        priors = {p for e, p, _ in cells if e == exp}
        assert {p for p in data.priors if task.offers(exp, p)} <= priors
        runs = {p: task.prior_fidelities(exp, p) for p in priors if p.budget is None}
        for g in load_suite("ladder").gaps:  # every distance, or one giving the same runs (gap 1: paper)
            if task.offers(exp, Prior(gap=g)):
                assert task.prior_fidelities(exp, Prior(gap=g)) in runs.values()
        distances |= {p.gap for p in runs} - {None}
    assert distances  # a ladder distance beyond the paper prior


def test_several_tasks_weigh_the_same():
    small = [type("E", (), {"key": ("small", i)})() for i in range(2)]
    large = [type("E", (), {"key": ("large", i)})() for i in range(50)]
    rng = np.random.default_rng(0)
    drawn = [ep.key[0] for _ in range(400) for ep in rl.balanced(rl.by_task(large + small), 4, rng)]
    assert abs(Counter(drawn)["small"] / len(drawn) - 0.5) < 0.05
    keys = [("large", i) for i in range(7)] + [("small", i) for i in range(3)]
    order = distill.epoch_order(keys, np.random.default_rng(0))
    assert Counter(k[0] for k in order) == {"large": 7, "small": 7} and set(order) == set(keys)
    assert all(order[i][0] != order[i + 1][0] for i in range(0, len(order), 2))  # alternating
    single = [("t", i) for i in range(5)]
    assert sorted(distill.epoch_order(single, np.random.default_rng(0))) == single
