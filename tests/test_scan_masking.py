"""Eq. 1 gradient masking against a direct numpy percentile computation, per sample."""
import numpy as np
import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.scan.masking import gradient_mask, sample_percentiles


def numpy_mask(G: np.ndarray, p) -> np.ndarray:
    """Reference: per sample, keep G >= P-th percentile of its positive entries; none positive -> ones."""
    ps = np.broadcast_to(np.asarray(p, dtype=np.float64), (G.shape[0],))
    out = np.zeros(G.shape, dtype=bool)
    for i in range(G.shape[0]):
        pos = G[i][G[i] > 0]
        out[i] = True if pos.size == 0 else G[i] >= np.percentile(pos, ps[i])
    return out


def make_grads(shape, seed=0):
    rng = np.random.default_rng(seed)
    G = rng.standard_normal(shape)
    G[1] = -np.abs(G[1])                  # no positive gradient at all -> mask of ones
    G[2] = np.round(G[2] * 2) / 2         # many ties, exact zeros
    G[3] = 0.0                            # all zero -> ones as well
    return G


@pytest.mark.parametrize("shape", [(5, 6, 3, 3), (5, 17, 8)])   # CNN C x H x W, ViT T x D
@pytest.mark.parametrize("p", [0, 37.5, 70, 95, 99.9, 100])
def test_mask_matches_numpy(shape, p):
    G = make_grads(shape)
    F = np.random.default_rng(1).standard_normal(shape) + 3.0     # nonzero so the mask is visible in F*mask
    got = gradient_mask(torch.from_numpy(F), torch.from_numpy(G), p).numpy()
    np.testing.assert_array_equal(got, F * numpy_mask(G, p))


@pytest.mark.parametrize("p", [0, 50, 70, 95, 100])
def test_sparse_gradients_take_the_top_k_path_and_match_numpy(p):
    """~5% positive entries (a CNN's last conv layer): ranked by top-k instead of a full sort, same mask."""
    G = make_grads((5, 40, 7, 7), seed=4)
    G[0] -= 1.65
    G[2] -= 1.5                           # sparse with ties (make_grads rounded it to halves)
    G[4] = np.round(G[4] - 1.65, 1)
    assert 8 * max((G[i] > 0).sum() for i in range(5)) < G[0].size
    F = np.random.default_rng(2).standard_normal(G.shape) + 3.0
    got = gradient_mask(torch.from_numpy(F), torch.from_numpy(G), p).numpy()
    np.testing.assert_array_equal(got, F * numpy_mask(G, p))


def test_mask_edges_and_per_sample_p():
    G = make_grads((5, 4, 5, 5), seed=3)
    F = np.ones_like(G)
    ones = gradient_mask(torch.from_numpy(F), torch.from_numpy(G), 50).numpy()
    assert ones[1].all() and ones[3].all()               # no positive gradient: everything kept
    p0 = gradient_mask(torch.from_numpy(F), torch.from_numpy(G), 0).numpy()
    np.testing.assert_array_equal(p0[0], G[0] > 0)        # P=0: every positive entry, nothing else
    p100 = gradient_mask(torch.from_numpy(F), torch.from_numpy(G), 100).numpy()
    np.testing.assert_array_equal(p100[0], G[0] == G[0].max())
    ps = np.array([0.0, 50.0, 80.0, 95.0, 100.0])
    got = gradient_mask(torch.from_numpy(F), torch.from_numpy(G), torch.from_numpy(ps)).numpy()
    np.testing.assert_array_equal(got, numpy_mask(G, ps).astype(float))


def test_float16_features_as_training_sees_them():
    rng = np.random.default_rng(4)
    G16 = rng.standard_normal((3, 64, 7, 7)).astype(np.float16)
    G = torch.from_numpy(G16.astype(np.float32))
    F = torch.ones_like(G)
    got = gradient_mask(F, G, 95).numpy()
    np.testing.assert_array_equal(got, numpy_mask(G16.astype(np.float64), 95).astype(np.float32))


@pytest.mark.parametrize("p", [-1, 100.5, float("nan"), "95"])
def test_bad_percentile_rejected(p):
    G = torch.randn(2, 3, 2, 2)
    with pytest.raises(ScanbenchError, match="percentile"):
        gradient_mask(G, G, p)


def test_bad_per_sample_percentile_rejected():
    G = torch.randn(2, 3, 2, 2)
    with pytest.raises(ScanbenchError, match="percentile"):
        gradient_mask(G, G, torch.tensor([50.0, 120.0]))
    with pytest.raises(ScanbenchError, match="one per sample"):
        gradient_mask(G, G, torch.tensor([50.0, 60.0, 70.0]))


def test_sample_percentiles_range_and_seed():
    a = sample_percentiles(2000, 70, 100, generator=torch.Generator().manual_seed(0))
    b = sample_percentiles(2000, 70, 100, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b)
    assert a.min() >= 70 and a.max() < 100
    assert 80 < a.mean() < 90                      # uniform on [70, 100): mean 85
    with pytest.raises(ScanbenchError):
        sample_percentiles(3, 70, 101)
    with pytest.raises(ScanbenchError):
        sample_percentiles(3, 90, 80)
