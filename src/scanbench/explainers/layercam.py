"""LayerCAM (Jiang et al. 2021): element-wise ReLU(gradient) x activation, summed over channels."""
from ._cam import LibraryCAM
from .base import register_explainer


@register_explainer("layercam", families=("cnn",), label="LayerCAM", order=90)
class LayerCAMExplainer(LibraryCAM):
    cam_class_name = "LayerCAM"
