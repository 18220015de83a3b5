"""Drop% / Inc% (Chattopadhay et al., Grad-CAM++) and Win%.

E = map * image (in [0, 1] image space, before the model's normalisation); Y and O are the softmax
probabilities of the explained class c on the image and on E.
    Drop% = mean(max(0, Y - O) / Y) * 100,   Inc% = mean(1[O > Y]) * 100.
Win% is not defined precisely in the paper; we take the share of images on which a method's drop is the
lowest among the methods compared, ties counting for each tied method.
"""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np
import torch

from ..errors import ScanbenchError
from ..probabilities import class_probs

Forward = Callable[[torch.Tensor], torch.Tensor]


def drop_inc(forward: Forward, images01: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor,
             eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Drop and Inc, in percent (Inc is 0 or 100 per image). Returns (drop, inc), each N."""
    images01 = torch.as_tensor(images01, dtype=torch.float32)
    maps = torch.as_tensor(maps).float().to(images01.device)
    if maps.shape != (images01.shape[0], *images01.shape[-2:]):
        raise ScanbenchError(f"maps must be N x H x W matching the images (got {tuple(maps.shape)} for "
                             f"images {tuple(images01.shape)})")
    classes = torch.as_tensor(classes, dtype=torch.long).view(-1)
    n = images01.shape[0]
    both = class_probs(forward, torch.cat([images01, images01 * maps.unsqueeze(1)]), classes.repeat(2))
    both = both.cpu().numpy().astype(np.float64)
    y, o = both[:n], both[n:]
    drop = np.maximum(0.0, y - o) / np.maximum(y, eps) * 100.0
    inc = (o > y).astype(np.float64) * 100.0
    return drop, inc


def win_rates(drops: Mapping[str, np.ndarray], atol: float = 1e-9) -> dict[str, float]:
    """Percent of images on which each method's drop is the lowest among `drops` (ties win for each)."""
    if not drops:
        return {}
    names = list(drops)
    table = np.stack([np.asarray(drops[m], dtype=np.float64) for m in names])   # methods x images
    if table.ndim != 2:
        raise ScanbenchError("each method's drops must be a 1-D array over the same images")
    best = table.min(0, keepdims=True)
    wins = table <= best + atol
    return {m: float(wins[i].mean() * 100.0) for i, m in enumerate(names)}
