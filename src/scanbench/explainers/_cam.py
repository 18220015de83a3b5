"""Shared base for the CAM family, computed by `pytorch-grad-cam` on the backbone's `gradcam_layer`.

We call the library's own pieces (its activation/gradient hooks and its `get_cam_image`, which holds each
method's weighting) but skip its post-processing: `BaseCAM.forward` min-max scales every map and resizes
it with OpenCV, while `Explainer.explain` upsamples and normalises all methods alike. So `_explain`
returns the raw ReLU'd CAM at the layer's grid (B x h x w).
"""
from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn as nn

from ..backbones import get_module
from .base import Explainer


def prefix_tokens(model: nn.Module) -> int:
    """Number of leading non-patch tokens (CLS, distillation, registers) of a timm ViT inside a TargetModel."""
    net = getattr(model, "net", model)
    return int(getattr(net, "num_prefix_tokens", 1))


def tokens_to_grid(tokens: torch.Tensor, n_prefix: int = 1) -> torch.Tensor:
    """B x T x D tokens -> B x D x g x g, the prefix tokens dropped; g derived from the token count."""
    patches = tokens[:, n_prefix:, :]
    b, n, d = patches.shape
    g = int(round(n ** 0.5))
    if g * g != n:
        raise ValueError(f"{n} patch tokens do not form a square grid")
    return patches.reshape(b, g, g, d).permute(0, 3, 1, 2)


class LibraryCAM(Explainer):
    """One pytorch-grad-cam method on `spec.gradcam_layer`, one ClassifierOutputTarget per image."""

    cam_class_name: ClassVar[str]  # a pytorch_grad_cam BaseCAM subclass (imported on use: the library
                                   # pulls in OpenCV and friends, which the other methods never need)

    def _explain(self, images01: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        layer = get_module(self.model, self.spec.gradcam_layer)
        reshape = None
        if self.spec.family == "vit":
            n_prefix = prefix_tokens(self.model)
            reshape = lambda t: tokens_to_grid(t, n_prefix)  # noqa: E731
        # The CAM object hooks the layer; build it per batch and release it so no hook outlives the call
        # (a left-over hook would store activations on every later forward of the model).
        cam_class = getattr(pytorch_grad_cam, self.cam_class_name)
        cam = cam_class(model=self.model, target_layers=[layer], reshape_transform=reshape)
        try:
            with torch.enable_grad():
                # A grad-requiring input (a fresh copy: also frees an inference-mode tensor) makes every
                # layer output require grad even if the weights are frozen.
                x = images01.detach().clone().requires_grad_(True)
                outputs = cam.activations_and_grads(x)
                # One target per image: each image's own class (a single target explains image 0 only).
                targets = [ClassifierOutputTarget(int(c)) for c in classes]
                loss = sum(t(o) for t, o in zip(targets, outputs))
                # The library's tensor hook catches the layer's gradient on the way; asking for the
                # input's gradient (not loss.backward) skips the weight gradients and leaves .grad alone.
                torch.autograd.grad(loss, x)
            # the library's hooks already copy to the CPU; .cpu() states it (a no-op there), as BaseCAM does
            acts = cam.activations_and_grads.activations[0].cpu().numpy()
            grads = cam.activations_and_grads.gradients[0].cpu().numpy()
            raw = cam.get_cam_image(images01, layer, targets, acts, grads, eigen_smooth=False)
        finally:
            cam.activations_and_grads.release()
        # the weighting is numpy's (the library's own): the map goes back to the input's device
        return torch.from_numpy(np.maximum(raw, 0).astype(np.float32)).to(images01.device)
