"""OptFormer: serialisation, the prefix-sharing scorer, determinism, leakage, episodes, learning."""


import numpy as np
import pandas as pd
import pytest
import torch

from baselines.optformer import OptFormer
from baselines.optformer.model import TrialTransformer, as_tensors, score_candidates
from baselines.optformer.optimizer import expected_improvement
from baselines.optformer.teacher import record_run
from baselines.optformer.tokens import (
    FIELDS,
    IGNORE,
    X_LABEL,
    Context,
    FeatureScaler,
    Serialiser,
    Tokens,
    bin_centres,
    concat,
    context_rows,
    online_ranks,
    quantiles,
    quantise,
)
from baselines.optformer.training import batch_loss, draw_probes, pad_batch, serialise
from bench.episode import run_episode
from bench.gym.problem import Budget
from bench.gym.registry import load_task
from bench.gym.spec import ParamSpec, TaskSpec, build_task
from bench.loop import play
from bench.methods import methods
from bench.numerics import seeded_torch
from bench.optimizer import Checkpoint
from bench.store import EpisodeKey, Store
from bench.training import TrainingData, checkpoint_for, train
from tests.helpers import noisy_test_experiments

TINY = {"trajectories": 16, "train_steps": 6, "d_model": 16, "layers": 1, "heads": 2, "probes": 2}


def tiny_spec(**params):
    return methods()["optformer"].model_copy(update={"params": {**TINY, **params}})


def shifted_bowls(n_train=10, n_test=4, cheap=80, target=30, shift=0.3):
    """Two fidelities of a 2-D bowl per experiment, the optimum drawn per experiment; the target's
    optimum is the cheap one's shifted by `shift` along `a`: the prior tells where, training how far."""
    rng = np.random.default_rng(0)
    rows = []
    for e in range(n_train + n_test):
        centre = rng.uniform(0.15, 0.55, 2)
        for params, tokens, n, move in ((1e6, 1e9, cheap, 0.0), (1e8, 1e10, target, shift)):
            for a, b in rng.uniform(0, 1, (n, 2)):
                loss = (a - centre[0] - move) ** 2 + (b - centre[1]) ** 2
                rows.append({"exp": f"e{e}", "a": a, "b": b, "params": params, "tokens": tokens,
                             "loss": loss})
    spec = TaskSpec(name="bowls", objective={"column": "loss", "direction": "minimize"},
                    config=[ParamSpec(name="a", log=False), ParamSpec(name="b", log=False)],
                    fidelity=["params", "tokens"], experiment="exp",
                    test=[f"e{e}" for e in range(n_train, n_train + n_test)])
    return build_task(spec, pd.DataFrame(rows))


# Serialisation --------------------------------------------------------------------------------------
def test_quantisation_round_trip_and_clipping():
    q = 64
    u = np.linspace(0, 1, 1001)
    assert np.abs(bin_centres(q)[quantise(u, q)] - u).max() <= 0.5 / q + 1e-12
    assert quantise(np.array([-0.3, 1.0, 1.7]), q).tolist() == [0, q - 1, q - 1]


def test_online_ranks_and_quantiles():
    assert online_ranks(np.array([3.0, 1.0, 2.0, 3.0])).tolist() == [0.5, 0.25, 0.5, 0.75]
    assert np.allclose(quantiles(np.array([5.0, 1.0, 1.0])), [5 / 6, 1 / 3, 1 / 3])


def test_context_takes_the_best_of_each_fidelity_most_expensive_first():
    levels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2])
    scores = np.array([4.0, 3, 2, 1, 9, 7, 8, 5, 6])
    rows = context_rows(levels, scores, max_trials=6, min_per_fidelity=2)
    # two per fidelity; cheapest fidelity first, best last within one
    assert rows.tolist() == [1, 0, 6, 4, 7, 8]
    assert context_rows(levels, scores, max_trials=3, min_per_fidelity=2).tolist() == [4, 7, 8]


def test_episode_tokens_have_the_trial_layout_and_no_label_leaks():
    ser = Serialiser(q=16, width=3, n_fid=2, max_trials=10)
    ctx = Context(np.full((2, 3), 0.5), np.ones((2, 2)), np.array([0.2, 0.9]))
    x = np.array([[0.1, 0.2, 0.3], [0.9, 0.8, 0.7]])
    t = ser.episode(ctx, x, np.zeros(2), np.array([1.0, 2.0]), np.array([3, 15]))
    assert len(t) == 1 + 4 * (3 + 2)
    trial = slice(1 + 2 * 5, 1 + 3 * 5)  # the first target trial: F, x1, x2, x3, y
    assert t.tok[trial].tolist() == [ser.fid, 1, 3, 4, 8]  # y token: online rank 0.5
    assert t.label[trial].tolist() == [1, 3, 4, 3, IGNORE]  # next x, then the pool-quantile label
    assert t.trial[trial].tolist() == [1] * 5
    assert t.coords[trial].tolist() == [[-1, -1, -1], [1, -1, -1], [1, 3, -1], [1, 3, 4], [1, 3, 4]]
    for pos in np.flatnonzero(t.kind == X_LABEL):  # the coordinate being predicted is not shown
        slot = t.role[pos] - 1  # 0 at F: the label is x_1
        assert np.all(t.coords[pos, slot:] == -1)


# The model -------------------------------------------------------------------------------------------
def _model(ser):
    with seeded_torch(0):
        return TrialTransformer(ser.q, ser.width, ser.n_fid, ser.max_trials, 16, 2, 2, 4).eval()


def test_batched_scoring_with_a_shared_prefix_equals_one_sequence_per_candidate():
    ser = Serialiser(q=16, width=2, n_fid=2, max_trials=10)
    model = _model(ser)
    rng = np.random.default_rng(0)
    ctx = Context(rng.uniform(size=(3, 2)), rng.normal(size=(3, 2)), rng.uniform(size=3))
    prefix = ser.episode(ctx, rng.uniform(size=(2, 2)), np.zeros(2), np.array([0.3, 0.1]))
    cands = ser.candidates(rng.uniform(size=(5, 2)), np.zeros(2), 3)
    with torch.no_grad():
        batched = score_candidates(model, prefix, cands)
        for i in range(5):
            whole = concat([prefix, Tokens(*(getattr(cands, f)[i] for f in FIELDS))])
            h = model.embed(*(x.unsqueeze(0) for x in as_tensors(whole)))
            out, _ = model.encode(h, None)
            single = torch.softmax(model.head(out[0, -1]), -1)
            assert torch.allclose(batched[i], single, atol=1e-5)


def test_training_probes_score_like_asking():
    """A probe at the end of a training sequence gets the distribution that asking computes."""
    task = load_task("sft_lora")
    data = TrainingData.of(task)
    problem, oracle = next(data.episodes(np.random.default_rng(0)))
    n_fid = 2 * (len(problem.fidelities[0].descriptors) + 1)
    ser = Serialiser(q=16, width=task.encoder.width, n_fid=n_fid, max_trials=10)
    scaler = FeatureScaler(np.zeros(ser.n_fid), np.ones(ser.n_fid))
    seq = serialise(record_run(problem, oracle, scaler, "random", 0, 10, 8, 2), ser)
    model = _model(ser)
    probes = draw_probes([seq], 1, 0.0, 10, np.random.default_rng(3))
    with torch.no_grad():
        _, parts = batch_loss(model, pad_batch([seq]), probes, 1.0)
        j = int(probes["trial"][0, 0]) - 1  # target trials before the cut
        prefix = seq.tokens.head(int(probes["cut"][0, 0]))
        cand = int(np.flatnonzero((seq.cand_tok == probes["tok"][0, 0].numpy()).all(1))[0])
        row = ser.candidates(problem.arrays().x[[cand]], seq.cand_feat, j + 1)
        probs = score_candidates(model, prefix, row)
    assert parts["probe"] == pytest.approx(-float(torch.log(probs[0, int(probes["label"][0, 0])])), rel=1e-4)


def test_expected_improvement():
    probs = np.zeros((2, 4))
    probs[0, 3], probs[1, 1] = 1.0, 1.0  # bin centres 0.125, 0.375, 0.625, 0.875
    assert np.allclose(expected_improvement(probs, 0.5), [0.375, 0.0])


# Training and episodes ------------------------------------------------------------------------------
def test_training_is_deterministic_and_never_reads_test_experiments(cache):
    task = load_task("sft_lora")
    spec = tiny_spec()
    a, path = train(spec, task)
    b, _ = train(spec, task, force=True)
    c, _ = train(spec, noisy_test_experiments(task), force=True)
    assert a.meta["digest"] == b.meta["digest"] == c.meta["digest"]
    assert np.isfinite(a.meta["validation_pregret"]) and path.exists()


def test_episode_asks_only_untried_target_candidates(cache, tmp_path):
    task = load_task("sft_lora")
    spec = tiny_spec()
    exp = task.split("test")[0]
    key = EpisodeKey("t", task.name, spec.name, exp, "trials", 3, 0)
    summary = run_episode(key, task, spec, Store(tmp_path / "out"))
    assert summary.failed is None and summary.trials == 3
    problem = task.problem(exp, Budget("trials", 30), "cheaper", seed=4)
    oracle, opt = task.oracle(exp, seed=4), spec.make(problem, 4, checkpoint_for(spec, task))
    n = len(problem.arrays())
    asked = []
    for _ in range(n + 2):  # past the pool's size: re-asks once every candidate was tried
        query = opt.ask()
        assert query.fidelity == problem.target and query.candidate is not None
        if len(asked) < n:
            assert query.candidate in opt.untried_ids()
        asked.append(query.candidate)
        opt.tell(query, oracle.evaluate(query))
    assert sorted(asked[:n]) == list(range(n))


def test_training_learns_to_transfer_from_cheap_to_expensive(cache):
    """On held-out experiments of the shifted bowls, one trial: the trained model beats random by
    far and best-prior (which cannot know the shift)."""
    task = shifted_bowls()
    params = {"trajectories": 100, "train_steps": 150, "d_model": 32, "heads": 2, "shift_share": 1.0}
    state = OptFormer.meta_train(TrainingData.of(task), 0, lambda _: None, **params)
    assert state["losses"]["probe"][-1] < state["losses"]["probe"][0] - 0.3
    ckpt = Checkpoint(state, {})
    scores = {"optformer": [], "random": [], "best-prior": []}
    for exp in task.split("test"):
        values = task.arrays(exp, task.experiment(exp).target.name)[1]
        scale = np.median(values) - values.min()
        for seed in range(5):
            problem = task.problem(exp, Budget("trials", 1), "cheaper", seed=seed)
            for name in scores:
                opt = OptFormer(problem, seed, checkpoint=ckpt, **params) if name == "optformer" \
                    else methods()[name].make(problem, seed)
                best = play(opt, task.oracle(exp, seed=seed), problem)
                scores[name].append((best - values.min()) / scale)
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert mean["optformer"] < 0.5 * mean["random"] and mean["optformer"] < mean["best-prior"], mean
