"""Full LRP (Chefer et al. 2021's "LRP" baseline): the class relevance propagated through every block with
the rules of `_lrp.py` down to the tokens entering the first block; the map is the patch embeddings' share,
summed over channels, on the token grid (Chefer go on through the patch embedding to pixels and report the
pixel map; per patch that sums to the same relevance: docs/DECISIONS.md)."""
from __future__ import annotations

from ._lrp import LRPBase, patch_grid, record, relevance
from .base import register_explainer


@register_explainer("lrp", families=("vit",), label="LRP", order=30)
class LRPExplainer(LRPBase):

    def _explain(self, images01, classes):
        rec = record(self.model, images01)
        r = relevance(self.model, rec, classes, self.rule, self.alpha, self.epsilon)
        return patch_grid(r["patches"])
