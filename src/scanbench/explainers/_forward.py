"""The forward pass of the perturbation methods (LIME, RISE): a `ForwardEngine` (ONNX or torch) when given, else the
model itself (on its device) without autograd; logits come back on the input's device or the model's
(scanbench.probabilities.class_probs takes them to the input's)."""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

from ..compute import module_device


def model_forward(model: nn.Module, engine) -> Callable[[torch.Tensor], torch.Tensor]:
    """images in [0, 1] -> logits, through `engine` when given, else through `model` on its device."""
    if engine is not None:
        return engine

    def forward(x01: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return model(x01.to(module_device(model)))

    return forward
