"""Bootstrap intervals: contain the mean, deterministic per seed, match a hand-written resampling."""
import numpy as np
import pytest

from scanbench.errors import ScanbenchError
from scanbench.metrics.bootstrap import bootstrap_ci


def test_interval_contains_mean_and_is_deterministic():
    values = np.random.default_rng(3).normal(50, 10, size=200)
    lo, hi = bootstrap_ci(values, n_resamples=500, seed=7)
    assert lo < values.mean() < hi
    # roughly mean +- 1.96 standard errors
    se = values.std(ddof=1) / np.sqrt(len(values))
    assert hi - lo == pytest.approx(2 * 1.96 * se, rel=0.2)
    np.testing.assert_array_equal(bootstrap_ci(values, 500, seed=7), [lo, hi])
    assert not np.array_equal(bootstrap_ci(values, 500, seed=8), [lo, hi])


def test_matches_plain_resampling():
    values = np.arange(10, dtype=float) ** 2
    rng = np.random.default_rng(11)
    means = [values[rng.integers(0, 10, size=10)].mean() for _ in range(300)]
    expected = np.percentile(means, [2.5, 97.5])
    # drawing in blocks (uneven: 300 = 42 * 7 + 6) must not change the stream of draws
    for block in (1, 7, 256):
        np.testing.assert_allclose(bootstrap_ci(values, 300, seed=11, block=block), expected)


def test_columns_resampled_together():
    rng = np.random.default_rng(0)
    pos, neg = rng.random(50) * 20, rng.random(50) * 60
    ci = bootstrap_ci(np.stack([pos, neg, neg - pos], 1), 200, seed=1)
    assert ci.shape == (3, 2)
    np.testing.assert_allclose(ci[0], bootstrap_ci(pos, 200, seed=1))
    assert ci[2, 0] <= (neg - pos).mean() <= ci[2, 1]


def test_constant_values_and_bad_input():
    np.testing.assert_allclose(bootstrap_ci(np.full(5, 3.0), 10, seed=0), [3.0, 3.0])
    with pytest.raises(ScanbenchError):
        bootstrap_ci(np.array([]), 10)
    with pytest.raises(ScanbenchError):
        bootstrap_ci(np.ones(3), 0)
