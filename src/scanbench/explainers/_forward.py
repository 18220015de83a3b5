"""Forward-only class probabilities for the perturbation methods (LIME, RISE): through a
`ForwardEngine` (ONNX or torch) when given, else the model itself without autograd."""
from __future__ import annotations

import torch
import torch.nn as nn


def class_probs(model: nn.Module, engine, x01: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (N x K) of N images in [0, 1]."""
    if engine is not None:
        logits = engine(x01)
    else:
        with torch.inference_mode():
            logits = model(x01)
    return logits.float().softmax(1)
