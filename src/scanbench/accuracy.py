"""Top-1 accuracy, the one way every stage and training loop measures it (percent of images whose top logit is
their label)."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np
import torch


def top1(forward: Callable[[torch.Tensor], torch.Tensor], batches: Iterable[torch.Tensor], labels) -> float:
    """Top-1 accuracy in percent of `forward` (a model, a ForwardEngine: inputs -> logits) on `batches`, an iterable
    of inputs whose rows follow `labels`' order, without autograd: 100 x correct / images (0.0 for no images).
    A batch goes to `forward` as it is (a model on a GPU takes its batches moved there)."""
    labels = np.asarray(labels)
    correct, start = 0, 0
    with torch.inference_mode():
        for x in batches:
            pred = forward(x).argmax(1).cpu().numpy()
            correct += int((pred == labels[start:start + len(pred)]).sum())
            start += len(pred)
    return 100.0 * correct / max(len(labels), 1)
