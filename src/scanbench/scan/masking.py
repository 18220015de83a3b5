"""Gradient-masked features (paper Eq. 1, docs/METHODS.md §1.1): keep F where the positive gradient is in its
top (100-P)%.

Per sample, Q = P-th percentile (linear interpolation, as numpy's default) of the *positive* entries of G
over the whole tensor (C x H x W, or T x D); mask = G >= Q. A sample without any positive gradient keeps
all of F (mask of ones): there is nothing to rank, and zeroing everything would leave the decoder blind.
"""
from __future__ import annotations

import torch

from ..config import check_percentile
from ..errors import ScanbenchError


def _check_p(p: float | torch.Tensor, batch: int) -> torch.Tensor:
    """P as a float64 tensor of length `batch`, every value checked to lie in [0, 100]."""
    if isinstance(p, torch.Tensor):
        p = p.detach().to(torch.float64).reshape(-1)
        if p.numel() == 1:
            p = p.expand(batch)
        if p.numel() != batch:
            raise ScanbenchError(f"P has {p.numel()} values for a batch of {batch}: give one per sample or one")
        bad = p[(p < 0) | (p > 100) | torch.isnan(p)]
        if bad.numel():
            raise ScanbenchError(f"P must be a percentile in [0, 100] (got {bad[0].item()!r})")
        return p
    return torch.full((batch,), check_percentile(p, "P"), dtype=torch.float64)


def positive_percentile(G: torch.Tensor, p: float | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(Q, has_positive): per-sample P-th percentile of the positive entries of G (float64, B),
    and whether the sample has any positive entry at all."""
    b = G.shape[0]
    p = _check_p(p, b).to(G.device)
    # Rank in G's own precision (float32 holds float16 features exactly), interpolate in float64.
    g = G.detach().reshape(b, -1)
    g = g if g.dtype in (torch.float32, torch.float64) else g.float()
    positive = g > 0
    n_pos = positive.sum(1)
    has_pos = n_pos > 0
    pos = p / 100.0 * (n_pos.clamp_min(1) - 1).to(torch.float64)    # numpy "linear": index (n-1) * P/100
    lo = pos.floor().long()
    hi = pos.ceil().long()
    k = int(n_pos.max().clamp_min(1))
    if 8 * k < g.shape[1]:
        # few positives (a CNN's last conv layer: ~5%): the k largest, descending, are the positives;
        # ascending rank i among a sample's n positives is descending rank n - 1 - i. Same values as a full sort.
        vals = torch.topk(torch.where(positive, g, torch.full_like(g, -float("inf"))), k, dim=1).values
        last = (n_pos.clamp_min(1) - 1).view(-1, 1)
        lo, hi = last - lo.view(-1, 1), last - hi.view(-1, 1)
    else:
        # non-positive entries sort after every positive one: the first n_pos values are the positives
        vals, _ = torch.sort(torch.where(positive, g, torch.full_like(g, float("inf"))), dim=1)
        lo, hi = lo.view(-1, 1), hi.view(-1, 1)
    v_lo = vals.gather(1, lo).squeeze(1).to(torch.float64)
    v_hi = vals.gather(1, hi).squeeze(1).to(torch.float64)
    lo = pos.floor().long()
    frac = pos - lo.to(torch.float64)
    # numpy's lerp: a + (b - a) t, computed from the upper end when t >= 0.5 (same rounding as numpy)
    q = torch.where(frac >= 0.5, v_hi - (v_hi - v_lo) * (1 - frac), v_lo + (v_hi - v_lo) * frac)
    q = torch.where(has_pos, q, torch.zeros_like(q))
    return q, has_pos


def gradient_mask(F: torch.Tensor, G: torch.Tensor, p: float | torch.Tensor) -> torch.Tensor:
    """F * (G >= Q), Q the per-sample P-th percentile of G's positive entries; no positive G: F unchanged."""
    if F.shape != G.shape:
        raise ScanbenchError(f"features {tuple(F.shape)} and gradients {tuple(G.shape)} differ in shape")
    q, has_pos = positive_percentile(G, p)
    view = (-1,) + (1,) * (G.ndim - 1)
    mask = (G.to(torch.float64) >= q.view(view)) & (G > 0)
    mask = mask | ~has_pos.view(view)
    return F * mask.to(F.dtype)


def sample_percentiles(n: int, low: float = 70.0, high: float = 100.0,
                       generator: torch.Generator | None = None) -> torch.Tensor:
    """n training percentiles drawn uniformly from [low, high) (paper: [70, 100))."""
    low = check_percentile(low, "scan.p_train_low")
    high = check_percentile(high, "scan.p_train_high")
    if high < low:
        raise ScanbenchError(f"scan.p_train_high ({high}) must be >= scan.p_train_low ({low})")
    return low + (high - low) * torch.rand(n, generator=generator, dtype=torch.float64)
