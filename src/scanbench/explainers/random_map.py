"""A random map: the calibration row (its AUC-D must be ~0). Drawn on the CPU (the seeded generator's), then
moved to the input's device, so the maps are the same on every device. One stream over the images in order
(draws of consecutive batches concatenate), so `skip` draws and drops the maps of the images before a shard."""
import torch

from .base import Explainer, register_explainer


@register_explainer("random", families=("cnn", "vit"), label="random", order=140, calibration=True)
class RandomExplainer(Explainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.generator = torch.Generator().manual_seed(self.seed)

    def _explain(self, images01, classes):
        b, _, h, w = images01.shape
        return torch.rand(b, h, w, generator=self.generator).to(images01.device)

    def skip(self, n_images, height, width):
        torch.rand(n_images, height, width, generator=self.generator)
