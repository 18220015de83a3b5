"""Chefer et al. 2021, "Generic attention-model explainability" (their "Explainability" method):
R = I; per block in order, A_bar = E_heads[(dA * A)^+] with dA = dlogit_c/dA; R = R + A_bar R;
the map is R's CLS row over the patches. Batched (the reference code handles one image at a time)."""
import torch

from ._attention import cls_row_to_grid, record_attention
from .base import Explainer, register_explainer


@register_explainer("transformer_attribution", families=("vit",), label="Explainability", order=50)
class TransformerAttributionExplainer(Explainer):
    def _explain(self, images01, classes):
        attn, grads, _ = record_attention(self.model, images01, classes)
        b, _, t, _ = attn[0].shape
        relevance = torch.eye(t, dtype=attn[0].dtype, device=attn[0].device).expand(b, t, t)
        for a, g in zip(attn, grads):
            a_bar = (g * a).clamp_min(0).mean(1)
            relevance = relevance + a_bar @ relevance
        return cls_row_to_grid(relevance[:, 0, :], self.model)
