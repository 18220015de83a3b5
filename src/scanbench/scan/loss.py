"""SCAN's losses (paper Eqs. 3-10, docs/METHODS.md §1.3-1.5) and the Table IX component variants.

    C        = (sign(y) sin(2 pi |y| / (8 + 0.15 |y|)) + 1) / 2          Eq. 4 (/2: C in [0, 1])
    Y~       = GaussianBlur(Y, k = 2 floor(s_k/s_f) + 1, sigma = s_k/(2 s_f)), Y in [-1, 1]   Eq. 7
    A_c      = 1 / (1 + alpha)                                           Eq. 5
    omega    = (mu - A_c)^2 / (mu (1 - mu)),  mu = mean(C) per sample    Eq. 6
    Loss_c   = (1 + omega)(mean((Y~ - Y_r)^2) + lambda) - lambda         Eq. 8
    Loss_r   = mean(alpha C e^2 + (1 - C) e^2),  e = Y~ - Y_r            Eq. 9
    Loss     = batch mean of Loss_c + Loss_r                             Eq. 10
"""
from __future__ import annotations

import functools
import math

import torch

from ..errors import ScanbenchError

# "full" = the paper's method; the others remove one component each (paper Table IX).
VARIANTS = ("full", "alpha1", "no_mask", "no_blur", "sigmoid")
EPS = 1e-6   # guards omega's denominator: mu(1 - mu) -> 0 must give a large finite loss, never inf/NaN


def check_variant(variant: str) -> str:
    if variant not in VARIANTS:
        raise ScanbenchError(f"unknown SCAN variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return variant


def stretching_sine(y: torch.Tensor) -> torch.Tensor:
    """Eq. 4: (sign(y) sin(2 pi |y| / (8 + 0.15 |y|)) + 1) / 2, in [0, 1]."""
    a = y.abs()
    return (torch.sign(y) * torch.sin(2 * math.pi * a / (8 + 0.15 * a)) + 1) / 2


def confidence(y: torch.Tensor, variant: str = "full") -> torch.Tensor:
    """Confidence map from the decoder's channel-0 logit; the "sigmoid" variant uses sigmoid(y)."""
    return torch.sigmoid(y) if check_variant(variant) == "sigmoid" else stretching_sine(y)


def blur_params(image_size: int, grid: int) -> tuple[int, float]:
    """Eq. 7: kernel size k = 2 floor(s_k / s_f) + 1 and sigma = s_k / (2 s_f)."""
    return 2 * (image_size // grid) + 1, image_size / (2 * grid)


def gaussian_kernel1d(k: int, sigma: float) -> torch.Tensor:
    x = torch.arange(k, dtype=torch.float64) - (k - 1) / 2
    w = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return (w / w.sum()).float()


@functools.lru_cache(maxsize=16)
def blur_matrix(size: int, k: int, sigma: float) -> torch.Tensor:
    """size x size matrix M with (M @ x) = 1-D Gaussian blur of x with reflect padding (torchvision's
    `gaussian_blur` border); replicate padding where the kernel's half-width reaches the image side."""
    w = gaussian_kernel1d(k, sigma).double()
    pad = k // 2
    M = torch.zeros(size, size, dtype=torch.float64)
    rows = torch.arange(size)
    for j in range(k):
        src = rows + j - pad
        if pad < size:   # reflect without repeating the edge: -1 -> 1, size -> size - 2
            src = src.abs()
            src = torch.where(src > size - 1, 2 * (size - 1) - src, src)
        src = src.clamp(0, size - 1)
        M.index_put_((rows, src), w[j].expand(size), accumulate=True)
    return M


def gaussian_blur(images: torch.Tensor, k: int, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of B x C x H x W as two matrix products (for k = 65 at 224 px, far faster
    on CPU than a 65-tap convolution); same result as a reflect-padded convolution."""
    h, w = images.shape[-2:]
    Mh = blur_matrix(h, k, sigma).to(images.device, images.dtype)
    Mw = Mh if w == h else blur_matrix(w, k, sigma).to(images.device, images.dtype)
    return Mh @ images @ Mw.T


def make_target(images01: torch.Tensor, grid: int, variant: str = "full") -> torch.Tensor:
    """Reconstruction target Y~ in [-1, 1]: the image blurred per Eq. 7 (unblurred for "no_blur")."""
    y = images01 * 2 - 1
    if check_variant(variant) == "no_blur":
        return y
    k, sigma = blur_params(images01.shape[-1], grid)
    return gaussian_blur(y, k, sigma)


def effective_alpha(alpha: float, variant: str = "full") -> float:
    if alpha <= 0:
        raise ScanbenchError(f"alpha must be > 0 (got {alpha!r})")
    return 1.0 if check_variant(variant) == "alpha1" else float(alpha)


def scan_loss(out: torch.Tensor, target: torch.Tensor, alpha: float, lambda_c: float = 0.1,
              variant: str = "full") -> dict[str, torch.Tensor]:
    """Loss terms for decoder output `out` (B x 4 x H x W: y_c, Y_r in [-1, 1]) against target Y~ (B x 3 x H x W).

    Returns scalars: loss (to minimise), loss_c, loss_r, omega, conf_area (mean C), recon_err (plain MSE),
    recon_err_weighted (confidence-weighted MSE, sum C e^2 / sum C: the error inside the confident area).
    """
    alpha = effective_alpha(alpha, variant)
    C = confidence(out[:, 0], variant)                   # B x H x W
    e2 = (target - out[:, 1:]) ** 2                      # B x 3 x H x W
    Cb = C.unsqueeze(1)
    b = out.shape[0]
    mse = e2.reshape(b, -1).mean(1)
    mu = C.reshape(b, -1).mean(1)
    a_c = 1.0 / (1.0 + alpha)
    omega = (mu - a_c) ** 2 / (mu * (1 - mu) + EPS)
    loss_c = (1 + omega) * (mse + lambda_c) - lambda_c
    loss_r = (alpha * Cb * e2 + (1 - Cb) * e2).reshape(b, -1).mean(1)
    weighted = (Cb * e2).reshape(b, -1).sum(1) / (Cb.expand_as(e2).reshape(b, -1).sum(1) + EPS)
    return {"loss": (loss_c + loss_r).mean(), "loss_c": loss_c.mean(), "loss_r": loss_r.mean(),
            "omega": omega.mean(), "conf_area": mu.mean(), "recon_err": mse.mean(),
            "recon_err_weighted": weighted.mean()}
