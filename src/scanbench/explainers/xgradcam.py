"""XGrad-CAM (Fu et al. 2020): weights = sum of gradient x activation / sum of activation."""
from ._cam import LibraryCAM
from .base import register_explainer


@register_explainer("xgradcam", families=("cnn",), label="XGrad-CAM", order=70)
class XGradCAMExplainer(LibraryCAM):
    cam_class_name = "XGradCAM"
