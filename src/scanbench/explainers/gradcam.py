"""Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradient."""
from pytorch_grad_cam import GradCAM

from ._cam import LibraryCAM
from .base import register_explainer


@register_explainer("gradcam")
class GradCAMExplainer(LibraryCAM):
    cam_class = GradCAM
