"""Capture a layer's features and their gradient, and a ViT's attention maps (and gradients)."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
import torch.nn as nn

from .backbones import attention_modules, get_module
from .compute import module_device


def _first_tensor(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def features_and_grads(model: nn.Module, layer: str, x01: torch.Tensor,
                       classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Forward x, then G = d logit_c / d F for the layer's output F (c: `classes`, else the prediction).

    Returns (logits, F, G), F and G detached with the layer's output shape (B x C x H x W or B x T x D).
    Each sample's gradient depends only on its own logit (the sum over the batch separates). Runs on the model's
    device (x is moved there); the outputs are on that device.
    """
    module = get_module(model, layer)
    store: dict[str, torch.Tensor] = {}

    def hook(_m, _inp, out):
        t = _first_tensor(out)
        t.retain_grad()
        store["F"] = t

    handle = module.register_forward_hook(hook)
    try:
        with torch.enable_grad():
            x = x01.detach().to(module_device(model)).requires_grad_(False)
            logits = model(x)
            if classes is None:
                classes = logits.argmax(1)
            classes = classes.to(logits.device).long()
            sel = logits.gather(1, classes.view(-1, 1)).sum()
            feats = store["F"]
            (grad,) = torch.autograd.grad(sel, feats)
    finally:
        handle.remove()
    return logits.detach(), feats.detach(), grad.detach()




class AttentionRecorder:
    """Records, per block, the softmax attention A (B x H x T x T), optionally its gradient, and the
    pre-softmax scores QK^T/sqrt(d). Switches timm's fused attention off while active (fused attention
    never materialises A)."""

    def __init__(self, model: nn.Module, with_grad: bool = False):
        self.model = model
        self.with_grad = with_grad
        self.attn: list[torch.Tensor] = []
        self.grads: list[torch.Tensor | None] = []
        self.scores: list[torch.Tensor] = []
        self._handles = []
        self._fused = []
        self._q: dict[int, torch.Tensor] = {}

    def __enter__(self) -> "AttentionRecorder":
        mods = attention_modules(self.model)
        if not mods:
            from .errors import ScanbenchError
            raise ScanbenchError("this model has no timm attention modules: attention methods need a ViT")
        for i, m in enumerate(mods):
            self._fused.append(m.fused_attn)
            m.fused_attn = False
            self._handles.append(m.attn_drop.register_forward_hook(self._attn_hook(i)))
            self._handles.append(m.q_norm.register_forward_hook(self._q_hook(i)))
            self._handles.append(m.k_norm.register_forward_hook(self._k_hook(i, m)))
        self.attn = [None] * len(mods)  # type: ignore[list-item]
        self.grads = [None] * len(mods)
        self.scores = [None] * len(mods)  # type: ignore[list-item]
        return self

    def _attn_hook(self, i):
        def hook(_m, _inp, out):
            self.attn[i] = out
            if self.with_grad and out.requires_grad:
                def save_grad(g, i=i):
                    self.grads[i] = g
                out.register_hook(save_grad)
        return hook

    def _q_hook(self, i):
        def hook(_m, _inp, out):
            self._q[i] = out
        return hook

    def _k_hook(self, i, m):
        def hook(_m, _inp, out):
            q = self._q.pop(i)
            self.scores[i] = (q * m.scale) @ out.transpose(-2, -1)
        return hook

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        for m, fused in zip(attention_modules(self.model), self._fused):
            m.fused_attn = fused
        self._handles.clear()


@contextlib.contextmanager
def no_fused_attention(model: nn.Module) -> Iterator[None]:
    mods = attention_modules(model)
    saved = [m.fused_attn for m in mods]
    for m in mods:
        m.fused_attn = False
    try:
        yield
    finally:
        for m, s in zip(mods, saved):
            m.fused_attn = s
