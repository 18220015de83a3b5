"""Eqs. 4-10 against values worked out by hand, the Eq. 7 blur, and the limits mu -> 0, 1."""
import math

import numpy as np
import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.scan.loss import blur_params, confidence, gaussian_blur, make_target, scan_loss, stretching_sine

Y_PEAK = 8 / 3.85   # |y| / (8 + 0.15 |y|) = 1/4  ->  sin(pi/2) = 1: C = 1 for +Y_PEAK, 0 for -Y_PEAK


def test_confidence_at_specific_values():
    y = torch.tensor([0.0, Y_PEAK, -Y_PEAK, 2.0, -1.0], dtype=torch.float64)
    c = stretching_sine(y)
    expected = [0.5, 1.0, 0.0,
                (math.sin(2 * math.pi * 2 / 8.3) + 1) / 2,        # 0.99919...
                (-math.sin(2 * math.pi / 8.15) + 1) / 2]          # 0.15159...
    assert c.tolist() == pytest.approx(expected, abs=1e-12)
    assert 0 <= c.min() and c.max() <= 1
    big = stretching_sine(torch.linspace(-1e4, 1e4, 100001, dtype=torch.float64))
    assert 0 <= big.min() and big.max() <= 1                    # stays in [0, 1] for any logit
    s = confidence(torch.tensor([0.0, 2.0]), "sigmoid")
    assert s.tolist() == pytest.approx([0.5, 1 / (1 + math.exp(-2))])


@pytest.mark.parametrize("size,grid,k,sigma", [(224, 7, 65, 16.0), (64, 8, 17, 4.0), (224, 14, 33, 8.0),
                                               (32, 4, 17, 4.0)])
def test_blur_params(size, grid, k, sigma):
    assert blur_params(size, grid) == (k, sigma)


def test_blur_against_direct_reflect_convolution():
    rng = np.random.default_rng(0)
    img = rng.random((1, 2, 9, 11))
    k, sigma = 5, 1.3
    x = np.arange(k) - k // 2
    w = np.exp(-x ** 2 / (2 * sigma ** 2))
    w /= w.sum()
    kern = np.outer(w, w)
    padded = np.pad(img, ((0, 0), (0, 0), (2, 2), (2, 2)), mode="reflect")
    want = np.zeros_like(img)
    for c in range(2):
        for i in range(9):
            for j in range(11):
                want[0, c, i, j] = (padded[0, c, i:i + k, j:j + k] * kern).sum()
    got = gaussian_blur(torch.from_numpy(img), k, sigma).numpy()
    np.testing.assert_allclose(got, want, atol=1e-6)
    flat = gaussian_blur(torch.full((1, 3, 64, 64), 0.3), *blur_params(64, 2))   # kernel 65 > image side
    assert torch.allclose(flat, torch.full_like(flat, 0.3), atol=1e-6)


def test_target_scaling_and_no_blur():
    img = torch.rand(2, 3, 64, 64)
    assert torch.allclose(make_target(img, 8, "no_blur"), img * 2 - 1)
    blurred = make_target(img, 8)
    assert torch.allclose(blurred, gaussian_blur(img * 2 - 1, 17, 4.0), atol=1e-6)
    assert blurred.std() < (img * 2 - 1).std()


def output(y, recon):
    """B x 4 x H x W decoder output with a constant logit y and reconstruction recon."""
    out = torch.empty(1, 4, 2, 2, dtype=torch.float64)
    out[:, 0] = y
    out[:, 1:] = recon
    return out


def test_loss_terms_by_hand_alpha4():
    # y = 0 -> C = 0.5 everywhere, mu = 0.5; A_c = 1/5; omega = (0.5-0.2)^2/(0.5*0.5) = 0.36
    # e = 0.5 - 0 -> e^2 = 0.25: Loss_c = 1.36 (0.25 + 0.1) - 0.1 = 0.376
    # Loss_r = 4*0.5*0.25 + 0.5*0.25 = 0.625; Loss = 1.001
    t = scan_loss(output(0.0, 0.0), torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64), alpha=4)
    assert t["omega"].item() == pytest.approx(0.36, rel=1e-5)
    assert t["loss_c"].item() == pytest.approx(0.376, rel=1e-5)
    assert t["loss_r"].item() == pytest.approx(0.625, rel=1e-9)
    assert t["loss"].item() == pytest.approx(1.001, rel=1e-5)
    assert t["conf_area"].item() == pytest.approx(0.5)
    assert t["recon_err"].item() == pytest.approx(0.25)
    assert t["recon_err_weighted"].item() == pytest.approx(0.25, rel=1e-5)


def test_loss_alpha1_and_variant_alpha1():
    # alpha = 1: A_c = 0.5 = mu -> omega = 0, Loss_c = mse = 0.25, Loss_r = 0.5*0.25 + 0.5*0.25 = 0.25
    tgt = torch.full((1, 3, 2, 2), 0.5, dtype=torch.float64)
    t = scan_loss(output(0.0, 0.0), tgt, alpha=1)
    assert t["omega"].item() == pytest.approx(0.0, abs=1e-12)
    assert t["loss"].item() == pytest.approx(0.5, rel=1e-9)
    assert scan_loss(output(0.0, 0.0), tgt, alpha=4, variant="alpha1")["loss"].item() == pytest.approx(0.5)


def test_loss_mixed_per_pixel_by_hand():
    # two samples; sample 0: C = [1, 0, 1, 0] (y = +-Y_PEAK), e = [0.2, 0.4, -0.2, 0]; sample 1: C = 0.5, e = 0.1
    out = torch.zeros(2, 4, 2, 2, dtype=torch.float64)
    out[0, 0] = torch.tensor([[Y_PEAK, -Y_PEAK], [Y_PEAK, -Y_PEAK]], dtype=torch.float64)
    tgt = torch.zeros(2, 3, 2, 2, dtype=torch.float64)
    tgt[0] = torch.tensor([[0.2, 0.4], [-0.2, 0.0]], dtype=torch.float64)
    tgt[1] = 0.1
    alpha, lam = 3.0, 0.1
    t = scan_loss(out, tgt, alpha=alpha, lambda_c=lam)
    a_c = 0.25
    mse0 = (0.04 + 0.16 + 0.04 + 0) / 4
    om0 = (0.5 - a_c) ** 2 / 0.25                           # 0.25
    lc0 = (1 + om0) * (mse0 + lam) - lam
    lr0 = (alpha * 0.04 + 0.16 + alpha * 0.04 + 0) / 4      # C = 1 pixels weighted alpha, C = 0 pixels 1
    mse1 = 0.01
    lc1 = (1 + om0) * (mse1 + lam) - lam
    lr1 = (alpha * 0.5 + 0.5) * 0.01
    assert t["loss_c"].item() == pytest.approx((lc0 + lc1) / 2, rel=1e-5)
    assert t["loss_r"].item() == pytest.approx((lr0 + lr1) / 2, rel=1e-9)
    assert t["loss"].item() == pytest.approx((lc0 + lr0 + lc1 + lr1) / 2, rel=1e-5)
    assert t["recon_err_weighted"].item() == pytest.approx((0.04 + 0.01) / 2, rel=1e-5)   # C-weighted errors


@pytest.mark.parametrize("y,mu", [(-Y_PEAK, 0.0), (Y_PEAK, 1.0)])
@pytest.mark.parametrize("alpha", [1.0, 4.0])
def test_loss_finite_at_area_limits(y, mu, alpha):
    out = output(y, 0.0).float().requires_grad_(True)
    tgt = torch.full((1, 3, 2, 2), 0.5)
    t = scan_loss(out, tgt, alpha=alpha)
    assert t["conf_area"].item() == pytest.approx(mu, abs=1e-6)
    for v in t.values():
        assert torch.isfinite(v)
    # omega = (mu - A_c)^2 / (mu (1 - mu) + eps): huge but finite; the loss is then dominated by it
    assert t["omega"].item() > 1e3
    t["loss"].backward()
    assert torch.isfinite(out.grad).all()


def test_bad_inputs():
    with pytest.raises(ScanbenchError, match="alpha"):
        scan_loss(output(0.0, 0.0), torch.zeros(1, 3, 2, 2, dtype=torch.float64), alpha=0)
    with pytest.raises(ScanbenchError, match="variant"):
        confidence(torch.zeros(2), "tanh")
