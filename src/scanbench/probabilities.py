"""Class probabilities from logits, for the perturbation explainers (LIME, RISE) and Drop/Inc alike."""
from __future__ import annotations

from typing import Callable

import torch


def class_probs(forward: Callable[[torch.Tensor], torch.Tensor], images01: torch.Tensor,
                classes=None) -> torch.Tensor:
    """Softmax probabilities of `forward`'s logits on the images (in float32), on the images' device: N x K, or,
    given `classes` (one per image), each image's probability of its class (N)."""
    probs = forward(images01).float().softmax(1).to(images01.device)
    if classes is None:
        return probs
    c = torch.as_tensor(classes, dtype=torch.long).view(-1, 1).to(probs.device)
    return probs.gather(1, c).squeeze(1)
