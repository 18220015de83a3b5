"""A centre prior: a fixed centred isotropic Gaussian, the same map for every image (the second calibration
row after the random map). It knows nothing about the image or the model, so any method that cannot beat it
is not explaining the image: centred objects alone give it a positive AUC-D on photo datasets."""
from __future__ import annotations

import dataclasses
import math

import torch

from ..errors import ScanbenchError
from .base import Explainer, MethodSettings, register_explainer

MAX_SIGMA = 10.0   # beyond ~10 image sides the map is flat to float32 precision: no ordering left


def check_sigma(sigma) -> float:
    """explain.centre.sigma: the Gaussian's standard deviation as a fraction of the image side, in (0, 10]."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not math.isfinite(sigma) \
            or not 0 < sigma <= MAX_SIGMA:
        raise ScanbenchError(f"explain.centre.sigma must be a fraction of the image side in (0, {MAX_SIGMA:g}] "
                             f"(got {sigma!r}); 0.25 is 56 px at 224 px")
    return float(sigma)


def centre_map(h: int, w: int, sigma: float, device: torch.device | str | None = None) -> torch.Tensor:
    """h x w Gaussian exp(-r^2 / (2 s^2)) around the image centre, s = sigma * min(h, w) pixels (isotropic);
    r is measured from pixel centres, so an even side has four equal maxima around the centre."""
    s = check_sigma(sigma) * min(h, w)
    y = torch.arange(h, dtype=torch.float64, device=device) + 0.5 - h / 2
    x = torch.arange(w, dtype=torch.float64, device=device) + 0.5 - w / 2
    r2 = y.view(-1, 1) ** 2 + x.view(1, -1) ** 2
    return torch.exp(-r2 / (2 * s * s)).float()


@register_explainer("centre", families=("cnn", "vit"), label="Centre prior", order=150, calibration=True)
class CentreExplainer(Explainer):
    @dataclasses.dataclass(frozen=True)
    class Settings(MethodSettings):
        """explain.centre: `sigma`, stated in params (no default there: the calibration row it draws is a choice)."""
        sigma: float = dataclasses.field(metadata={"help": "the centre prior's Gaussian sigma as a fraction of the "
                                                           "image side, e.g. 0.25"})

        def check(self, method: str) -> None:
            check_sigma(self.sigma)

    def __init__(self, *args, sigma: float = 0.25, **kwargs):
        super().__init__(*args, **kwargs)
        self.sigma = check_sigma(sigma)

    def _explain(self, images01, classes):
        b, _, h, w = images01.shape
        return centre_map(h, w, self.sigma, device=images01.device).expand(b, h, w)
