"""The shared numerical helpers agree with the library functions they stand in for; the numerical
libraries run the same kernels on every machine."""

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm, rankdata

import bench
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


@pytest.mark.skipif(not bench.HOLDS_KERNELS, reason="x86-64 with AVX2 only")
def test_numpy_and_blas_run_the_same_kernels_on_every_machine():
    """`bench` loads before NumPy (pytest's `-p bench`; a worker imports it first) and holds NumPy's
    dispatch and OpenBLAS to their AVX2 kernels: an AVX-512 machine computes what an AVX2 one does
    (grpo's simulated table, SMAC's GP and the shipped checkpoints differed between the two)."""
    from numpy.lib.introspect import opt_func_info
    from threadpoolctl import threadpool_info

    targets = {v["current"] for signatures in opt_func_info().values() for v in signatures.values()}
    assert not [t for t in targets if t.startswith(("X86_V4", "AVX512"))]
    assert {i["architecture"] for i in threadpool_info() if i["internal_api"] == "openblas"} == {"Haswell"}
    assert all(os.environ[name] == value for name, value in bench.SAME_KERNELS.items())
