"""The shared numerical helpers agree with the library functions they stand in for."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm, rankdata

from bench.numerics import mean_ranks, normal_scores_by_level

# Few distinct values, so that ties are common; infinities (diverged runs) and NaN included.
values = st.lists(st.sampled_from([-np.inf, -1.5, 0.0, 0.25, 0.25000000000000006, 2.0, 7.0, np.inf, np.nan])
                  | st.floats(-1e6, 1e6), max_size=30)


def scipy_scores(y: np.ndarray, levels: np.ndarray) -> np.ndarray:
    out = np.zeros(len(y))
    for lv in np.unique(levels):
        mask = levels == lv
        out[mask] = norm.ppf((rankdata(y[mask]) - 0.5) / mask.sum())
    return out


@settings(max_examples=300, deadline=None)
@given(values)
def test_mean_ranks_are_scipys_rankdata(v):
    v = np.array(v, float)
    np.testing.assert_array_equal(mean_ranks(v), rankdata(v))


@settings(max_examples=300, deadline=None)
@given(values, st.integers(1, 3), st.randoms(use_true_random=False))
def test_normal_scores_are_scipys_to_the_bit(v, n_levels, rnd):
    y = np.array(v, float)
    levels = np.array([rnd.randrange(n_levels) for _ in v], int)
    ours, theirs = normal_scores_by_level(y, levels), scipy_scores(y, levels)
    np.testing.assert_array_equal(np.isnan(ours), np.isnan(theirs))
    assert ours[~np.isnan(ours)].tobytes() == theirs[~np.isnan(theirs)].tobytes()
