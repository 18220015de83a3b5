"""SCAN (Self-Confidence and Analysis Networks): gradient masking (Eq. 1), the analysis network
(decoder), the IB-guided losses (Eqs. 3-10), decoder training and the explainer (docs/METHODS.md §1)."""
from .decoder import build_decoder, decoder_from_kwargs
from .loss import VARIANTS, blur_params, confidence, gaussian_blur, scan_loss
from .masking import gradient_mask, sample_percentiles

__all__ = ["VARIANTS", "blur_params", "build_decoder", "confidence", "decoder_from_kwargs", "gaussian_blur",
           "gradient_mask", "sample_percentiles", "scan_loss"]
