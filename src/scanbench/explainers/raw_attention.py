"""Raw attention: the last block's attention from the CLS token to the patches, averaged over heads."""
from ._attention import cls_row_to_grid, record_attention
from .base import Explainer, register_explainer


@register_explainer("raw_attention", families=("vit",), label="Raw Attention", order=10)
class RawAttentionExplainer(Explainer):
    def _explain(self, images01, classes):
        attn, _, _ = record_attention(self.model, images01)
        return cls_row_to_grid(attn[-1].mean(1)[:, 0, :], self.model)
