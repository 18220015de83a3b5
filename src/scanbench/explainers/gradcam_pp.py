"""Grad-CAM++ (Chattopadhay et al. 2018): weights from higher-order gradient terms (Eq. 19)."""
from ._cam import LibraryCAM
from .base import register_explainer


@register_explainer("gradcam++", families=("cnn",), label="Grad-CAM++", order=80)
class GradCAMPlusPlusExplainer(LibraryCAM):
    cam_class_name = "GradCAMPlusPlus"
