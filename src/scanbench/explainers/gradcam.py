"""Grad-CAM (Selvaraju et al. 2017): channel weights = spatial mean of the gradient."""
from ._cam import LibraryCAM
from .base import register_explainer


@register_explainer("gradcam", families=("cnn", "vit"), label="Grad-CAM", order=60)
class GradCAMExplainer(LibraryCAM):
    cam_class_name = "GradCAM"
