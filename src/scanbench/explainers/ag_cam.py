"""Attention-Guided CAM (Leem & Seo 2024): sum over blocks and heads of
ReLU(dy_c/dA)[CLS, patches] * sigmoid(QK^T/sqrt(d))[CLS, patches] (pre-softmax scores, sigmoid-squashed)."""
import torch

from ._attention import cls_row_to_grid, record_attention
from .base import Explainer, register_explainer


@register_explainer("ag_cam", families=("vit",), label="AG-CAM", order=100)
class AGCAMExplainer(Explainer):
    def _explain(self, images01, classes):
        _, grads, scores = record_attention(self.model, images01, classes)
        total = torch.zeros_like(scores[0][:, 0, 0, :])  # B x T (CLS row)
        for g, s in zip(grads, scores):
            total = total + (g[:, :, 0, :].clamp_min(0) * torch.sigmoid(s[:, :, 0, :])).sum(1)
        return cls_row_to_grid(total, self.model)  # keeps the patch columns only
