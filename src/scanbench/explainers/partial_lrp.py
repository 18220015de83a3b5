"""Partial LRP (Voita et al. 2019, as Chefer et al. 2021 run it: their "lrp_last_layer"): the LRP relevance of
the last block's attention map, negative relevance dropped, averaged over the heads (a head that carries more of
the class relevance weighs more), the CLS row over the patches. The propagation stops at that block, so it
costs a forward and the last block's rules only."""
from __future__ import annotations

from ..errors import ScanbenchError
from ._attention import cls_row_to_grid
from ._cam import prefix_tokens
from ._lrp import LRPBase, record, relevance
from .base import register_explainer


@register_explainer("partial_lrp", families=("vit",), label="Part. LRP", order=40)
class PartialLRPExplainer(LRPBase):

    def _explain(self, images01, classes):
        if prefix_tokens(self.model) < 1:
            raise ScanbenchError("partial LRP reads the CLS token's attention row: this ViT has no CLS token")
        rec = record(self.model, images01)
        r = relevance(self.model, rec, classes, self.rule, self.alpha, self.epsilon, last_attention_only=True)
        return cls_row_to_grid(r["attention"].clamp(min=0).mean(1)[:, 0, :], self.model)
