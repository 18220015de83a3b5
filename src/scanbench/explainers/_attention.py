"""Shared pieces of the attention family: record every block's attention (and its gradient) for a batch,
and turn a CLS row into a map on the token grid."""
from __future__ import annotations

import torch
import torch.nn as nn

from ..hooks import AttentionRecorder
from ._cam import prefix_tokens


def record_attention(model: nn.Module, images01: torch.Tensor, classes: torch.Tensor | None = None
                     ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None, list[torch.Tensor]]:
    """Per block (in order): softmax attention A (B x H x T x T), dlogit_c/dA if `classes` is given (else
    None), and the pre-softmax scores QK^T/sqrt(d).

    Gradients come from the sum over the batch of each image's own class logit: images do not interact in
    an eval-mode ViT, so each image's gradient is that of its own logit alone.
    """
    with AttentionRecorder(model) as rec:
        if classes is None:
            with torch.no_grad():
                model(images01)
            grads = None
        else:
            with torch.enable_grad():
                # grad-requiring copy of the input: A is in the graph even with frozen weights
                logits = model(images01.detach().clone().requires_grad_(True))
                # clone: classes made under inference_mode cannot take part in autograd
                sel = logits.gather(1, classes.clone().to(logits.device).view(-1, 1)).sum()
                # Gradient straight to the recorded attention tensors (no parameter .grad is touched).
                grads = [g.detach() for g in torch.autograd.grad(sel, rec.attn)]
        attn = [a.detach() for a in rec.attn]
        scores = [s.detach() for s in rec.scores]
    return attn, grads, scores


def cls_row_to_grid(rows: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """B x T relevance rows of the CLS token -> B x g x g over the patch tokens."""
    patches = rows[:, prefix_tokens(model):]
    b, n = patches.shape
    g = int(round(n ** 0.5))
    return patches.reshape(b, g, g)
