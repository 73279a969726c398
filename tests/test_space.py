import numpy as np
import pandas as pd
import pytest
from ConfigSpace import ConfigurationSpace

from bench.gym.space import Snapper, encode, infer_hyperparameter


@pytest.fixture
def space():
    df = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2], "bs": [32, 64, 128], "opt": ["adam", "sgd", "adam"]})
    cs = ConfigurationSpace()
    cs.add([infer_hyperparameter(c, df[c]) for c in df.columns])
    return cs


def test_inference_types_and_log(space):
    assert space["lr"].log and not space["bs"].log  # 100x span -> log; 4x span -> linear
    assert type(space["bs"]).__name__ == "UniformIntegerHyperparameter"
    assert list(space["opt"].choices) == ["adam", "sgd"]


def test_encoding_is_unit_cube_with_log_scale(space):
    x = encode(space, [{"lr": 1e-3, "bs": 80, "opt": "sgd"}])
    # order of ConfigSpace keys: bs, lr, opt (one-hot / sqrt 2)
    assert x.shape == (1, 4)
    np.testing.assert_allclose(x[0], [0.5, 0.5, 0.0, 1 / np.sqrt(2)])


def test_categorical_mismatch_is_distance_one(space):
    a, b = encode(space, [{"lr": 1e-3, "bs": 64, "opt": "adam"}, {"lr": 1e-3, "bs": 64, "opt": "sgd"}])
    assert np.linalg.norm(a - b) == pytest.approx(1.0)


def test_snapping_picks_nearest_in_encoding(space):
    pool = pd.DataFrame({"lr": [1e-4, 1e-3, 1e-2], "bs": [32, 64, 128], "opt": ["adam"] * 3})
    snap = Snapper(space, pool)
    # 4e-3 is nearer 1e-2 than 1e-3 on a log scale? log10: -2.4 vs -2, -3 -> nearer 1e-2 (0.4 < 0.6)
    i, d = snap.nearest({"lr": 4e-3, "bs": 128, "opt": "adam"})
    assert i == 2 and d > 0
    i, d = snap.nearest({"lr": 1e-3, "bs": 64, "opt": "adam"})
    assert (i, d) == (1, 0.0)
    i, _ = snap.nearest({"lr": 1e-3, "bs": 64, "opt": "adam"}, exclude=[1])
    assert i in (0, 2)
