"""Drop% / Inc% (Chattopadhay et al., Grad-CAM++): the per-image metrics declared in scanbench.per_image_metrics.

E = map * image (in [0, 1] image space, before the model's normalisation); Y and O are the softmax
probabilities of the explained class c on the image and on E, from one forward pass; each declared metric is a
function of them.
    Drop% = mean(max(0, Y - O) / Y) * 100,   Inc% = mean(1[O > Y]) * 100.
Win% compares methods on the same images (the share on which a method's drop is the lowest): the report computes it
(scanbench.report.results.win_rates).
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from ..errors import ScanbenchError
from ..per_image_metrics import PER_IMAGE_METRICS, drop, increase
from ..probabilities import class_probs

Forward = Callable[[torch.Tensor], torch.Tensor]


def confidences(forward: Forward, images01: torch.Tensor, maps: torch.Tensor,
                classes: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(Y, O): each image's class probability on the image and on map x image, N each, from one forward pass."""
    images01 = torch.as_tensor(images01, dtype=torch.float32)
    maps = torch.as_tensor(maps).float().to(images01.device)
    if maps.shape != (images01.shape[0], *images01.shape[-2:]):
        raise ScanbenchError(f"maps must be N x H x W matching the images (got {tuple(maps.shape)} for "
                             f"images {tuple(images01.shape)})")
    classes = torch.as_tensor(classes, dtype=torch.long).view(-1)
    n = images01.shape[0]
    both = class_probs(forward, torch.cat([images01, images01 * maps.unsqueeze(1)]), classes.repeat(2))
    both = both.cpu().numpy().astype(np.float64)
    return both[:n], both[n:]


def per_image_metrics(forward: Forward, images01: torch.Tensor, maps: torch.Tensor,
                      classes: torch.Tensor) -> dict[str, np.ndarray]:
    """Every declared per-image metric (scanbench.per_image_metrics) by name, N values each in image order."""
    y, o = confidences(forward, images01, maps, classes)
    return {m.name: m.per_image(y, o) for m in PER_IMAGE_METRICS}


def drop_inc(forward: Forward, images01: torch.Tensor, maps: torch.Tensor, classes: torch.Tensor,
             eps: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    """Per-image Drop and Inc, in percent (Inc is 0 or 100 per image). Returns (drop, inc), each N."""
    y, o = confidences(forward, images01, maps, classes)
    return drop(y, o, eps), increase(y, o)
