"""Forward-only class probabilities for the perturbation methods (LIME, RISE): through a
`ForwardEngine` (ONNX or torch) when given, else the model itself (on its device) without autograd. The
probabilities come back on the input's device."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..compute import module_device


def class_probs(model: nn.Module, engine, x01: torch.Tensor) -> torch.Tensor:
    """Softmax probabilities (N x K) of N images in [0, 1]."""
    if engine is not None:
        logits = engine(x01)
    else:
        with torch.inference_mode():
            logits = model(x01.to(module_device(model)))
    return logits.float().softmax(1).to(x01.device)
