"""SCAN registered as an explanation method; the implementation lives in scanbench.scan.explainer."""
from ..scan.explainer import SCANExplainer
from .base import register_explainer


@register_explainer("scan", families=("cnn", "vit"), label="SCAN", order=130)
class ScanExplainer(SCANExplainer):
    """SCAN: gradient-masked features decoded into a self-confidence map (docs/METHODS.md §1)."""

    @classmethod
    def params_kwargs(cls, params, engine=None, decoder_path=None):
        # explain.scan holds nothing: SCAN's inference percentile is the top-level `p` (training and the ablations
        # read it too) and its decoder is the train_scan stage's output
        return {**super().params_kwargs(params, engine, decoder_path), "decoder_path": decoder_path, "p": params["p"]}
