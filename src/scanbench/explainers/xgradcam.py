"""XGrad-CAM (Fu et al. 2020): weights = sum of gradient x activation / sum of activation."""
from pytorch_grad_cam import XGradCAM

from ._cam import LibraryCAM
from .base import register_explainer


@register_explainer("xgradcam")
class XGradCAMExplainer(LibraryCAM):
    cam_class = XGradCAM
