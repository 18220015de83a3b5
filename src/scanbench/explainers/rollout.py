"""Attention rollout (Abnar & Zuidema 2020): per block A_bar = mean_heads(A) + I, row-normalised;
R = A_bar_L ... A_bar_1; the map is R's CLS row over the patches. Class-agnostic."""
import torch

from ._attention import cls_row_to_grid, record_attention
from .base import Explainer, register_explainer


@register_explainer("rollout", families=("vit",), label="Rollout", order=20)
class RolloutExplainer(Explainer):
    def _explain(self, images01, classes):
        attn, _, _ = record_attention(self.model, images01)
        b, _, t, _ = attn[0].shape
        eye = torch.eye(t, dtype=attn[0].dtype, device=attn[0].device)
        rollout = eye.expand(b, t, t)
        for a in attn:  # block order: the newest block multiplies from the left
            a_bar = a.mean(1) + eye  # + I accounts for the residual connection
            a_bar = a_bar / a_bar.sum(-1, keepdim=True)
            rollout = a_bar @ rollout
        return cls_row_to_grid(rollout[:, 0, :], self.model)
