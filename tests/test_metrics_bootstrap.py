"""Bootstrap intervals: contain the mean, deterministic per seed, match a hand-written resampling; the paired
bootstrap of two methods on the same images."""
import numpy as np
import pytest

from scanbench.errors import ScanbenchError
from scanbench.metrics.bootstrap import bootstrap_ci, paired_bootstrap_ci


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


# ------------------------------------------------------------------------------------- paired bootstrap

def test_paired_identical_methods_give_zero():
    a = np.random.default_rng(4).normal(30, 15, size=40)
    np.testing.assert_array_equal(paired_bootstrap_ci(a, a.copy(), 200, seed=0), [0.0, 0.0])


def test_paired_constant_shift_gives_the_shift():
    b = np.random.default_rng(5).normal(20, 25, size=60)
    lo, hi = paired_bootstrap_ci(b + 3.25, b, 300, seed=1)
    assert lo == pytest.approx(3.25, abs=1e-9) and hi == pytest.approx(3.25, abs=1e-9)
    lo, hi = paired_bootstrap_ci(b, b + 3.25, 300, seed=1)
    assert lo == pytest.approx(-3.25, abs=1e-9) and hi == pytest.approx(-3.25, abs=1e-9)


def test_paired_is_narrower_than_unpaired_for_correlated_methods():
    """Two methods sharing the images' difficulty (large, common per-image term) that differ by a small noisy
    amount: the paired interval is several times narrower than the one from two independent resamplings."""
    rng = np.random.default_rng(6)
    difficulty = rng.normal(0, 20, size=100)
    a = 30 + difficulty + rng.normal(0, 2, size=100)
    b = 28 + difficulty + rng.normal(0, 2, size=100)
    paired = paired_bootstrap_ci(a, b, 1000, seed=2)
    ra = np.random.default_rng(7).integers(0, 100, size=(1000, 100))
    rb = np.random.default_rng(8).integers(0, 100, size=(1000, 100))
    unpaired = np.percentile(a[ra].mean(1) - b[rb].mean(1), [2.5, 97.5])
    assert paired[0] < (a - b).mean() < paired[1]
    assert paired[0] > 0                                       # the paired test tells the methods apart
    assert unpaired[0] < 0 < unpaired[1]                       # two separate resamplings cannot
    assert (paired[1] - paired[0]) < 0.25 * (unpaired[1] - unpaired[0])


def test_paired_matches_hand_resampling_and_own_intervals():
    """One draw of image indices per resample, applied to both; the draws are those of bootstrap_ci(a)."""
    rng = np.random.default_rng(9)
    a, b = rng.random(12) * 50, rng.random(12) * 50
    draws = np.random.default_rng(3)
    diffs = []
    for _ in range(150):
        idx = draws.integers(0, 12, size=12)
        diffs.append(a[idx].mean() - b[idx].mean())
    for block in (1, 7, 256):
        np.testing.assert_allclose(paired_bootstrap_ci(a, b, 150, seed=3, block=block),
                                   np.percentile(diffs, [2.5, 97.5]), rtol=0, atol=1e-9)
    np.testing.assert_allclose(paired_bootstrap_ci(a, np.zeros(12), 150, seed=3), bootstrap_ci(a, 150, seed=3),
                               rtol=0, atol=1e-12)
    # 90% is inside 95%
    lo90, hi90 = paired_bootstrap_ci(a, b, 150, seed=3, level=0.9)
    lo95, hi95 = paired_bootstrap_ci(a, b, 150, seed=3)
    assert lo95 <= lo90 <= hi90 <= hi95


def test_paired_bad_input():
    with pytest.raises(ScanbenchError, match="same images"):
        paired_bootstrap_ci(np.ones(3), np.ones(4))
    with pytest.raises(ScanbenchError, match="same images"):
        paired_bootstrap_ci(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(ScanbenchError, match="at least one image"):
        paired_bootstrap_ci(np.array([]), np.array([]))
    with pytest.raises(ScanbenchError, match="evaluate.bootstrap"):
        paired_bootstrap_ci(np.ones(3), np.ones(3), n_resamples=0)
    with pytest.raises(ScanbenchError, match="level"):
        paired_bootstrap_ci(np.ones(3), np.ones(3), level=1.5)
