"""SCAN registered as an explanation method; the implementation lives in scanbench.scan.explainer."""
from ..scan.explainer import SCANExplainer
from .base import register_explainer


@register_explainer("scan")
class ScanExplainer(SCANExplainer):
    """SCAN: gradient-masked features decoded into a self-confidence map (SPEC section 3)."""
