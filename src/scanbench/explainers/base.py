"""The one interface every explanation method implements, and the registry by name.

    explainer = make_explainer("gradcam", model, spec, **method_params)
    maps = explainer.explain(images01, classes)      # B x H x W, each map min-max scaled to [0, 1]

A subclass overrides `_explain` (like pytorch-grad-cam's `get_cam_weights` hook); `explain` handles
batching, upsampling to input resolution and normalisation, so all methods return maps alike.

Devices: an explainer runs where its model is (`self.device`, taken from the model's parameters as
pytorch-grad-cam's BaseCAM does); `explain` moves the images and classes there, `_explain` builds every tensor
on its input's device, and the maps come back on the device the images came in on.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..backbones import BackboneSpec
from ..compute import module_device
from ..errors import ScanbenchError

CAM_FAMILY = ("gradcam++", "xgradcam", "layercam")
ATTENTION_FAMILY = ("raw_attention", "rollout", "lrp", "partial_lrp", "transformer_attribution", "ag_cam")
BOTH = ("scan", "gradcam", "lime", "rise", "random", "centre")
# Which methods apply to which family, declared once.
APPLIES: dict[str, tuple[str, ...]] = {
    "cnn": BOTH + CAM_FAMILY,
    "vit": BOTH + ATTENTION_FAMILY,
}
ALL_METHODS = BOTH + CAM_FAMILY + ATTENTION_FAMILY


def normalize_maps(maps: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Per-image min-max to [0, 1]; a constant map becomes all zeros."""
    b = maps.shape[0]
    flat = maps.reshape(b, -1).float()
    lo = flat.min(1, keepdim=True).values
    hi = flat.max(1, keepdim=True).values
    out = (flat - lo) / (hi - lo).clamp_min(eps)
    out = torch.where((hi - lo) > eps, out, torch.zeros_like(out))
    return out.reshape(maps.shape)


def upsample_maps(maps: torch.Tensor, size: int) -> torch.Tensor:
    """B x h x w -> B x size x size, bilinear (no-op if already that size)."""
    if maps.shape[-1] == size and maps.shape[-2] == size:
        return maps
    return F.interpolate(maps.unsqueeze(1).float(), size=(size, size), mode="bilinear",
                         align_corners=False).squeeze(1)


class Explainer(ABC):
    """Base class: model + backbone entry in, `explain(images01, classes) -> maps` out."""

    name: ClassVar[str] = ""

    def __init__(self, model: nn.Module, spec: BackboneSpec, seed: int = 0, batch_size: int = 16,
                 **params: Any):
        self.model = model.eval()
        self.spec = spec
        self.seed = seed
        self.batch_size = batch_size
        self.params = params

    @property
    def device(self) -> torch.device:
        """Where the model (and so this explainer's work) is."""
        return module_device(self.model)

    @abstractmethod
    def _explain(self, images01: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Raw maps for one batch (B x h x w, any scale); every method implements this hook."""

    def skip(self, n_images: int, height: int, width: int) -> None:
        """Advance the method's random stream past `n_images` images of this size, as if it had explained them:
        a shard of a data-parallel run that starts at image n then draws what the single run draws for its
        images. Nothing to do for methods without randomness, or whose randomness is per image or fixed by the
        seed (LIME, RISE's masks)."""

    def check_inputs(self, images01: torch.Tensor, classes: torch.Tensor | None) -> torch.Tensor:
        """Validate the image batch; return the classes to explain (the predictions when not given)."""
        if images01.ndim != 4 or images01.shape[1] != 3:
            raise ScanbenchError(f"images must be B x 3 x H x W in [0, 1] (got {tuple(images01.shape)})")
        if classes is None:
            with torch.no_grad():
                classes = self.model(images01.to(self.device)).argmax(1)
        return torch.as_tensor(classes, dtype=torch.long).view(-1).to(self.device)

    def explain(self, images01: torch.Tensor, classes: torch.Tensor | None = None) -> torch.Tensor:
        """Maps (B x H x W in [0, 1]) on the images' device, computed on the model's."""
        classes = self.check_inputs(images01, classes)
        out_device, x = images01.device, images01.to(self.device)   # the same device: no copy
        out = []
        for i in range(0, x.shape[0], self.batch_size):
            raw = self._explain(x[i:i + self.batch_size], classes[i:i + self.batch_size]).to(x.device)
            raw = torch.nan_to_num(raw.detach().float(), nan=0.0, posinf=0.0, neginf=0.0)
            out.append(normalize_maps(upsample_maps(raw, x.shape[-1])))
        return torch.cat(out).to(out_device)


_REGISTRY: dict[str, type[Explainer]] = {}


def register_explainer(name: str) -> Callable[[type[Explainer]], type[Explainer]]:
    def deco(cls: type[Explainer]) -> type[Explainer]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return deco


def check_method(name: str, family: str | None = None) -> None:
    if name not in ALL_METHODS:
        raise ScanbenchError(f"unknown method {name!r}; known: {', '.join(ALL_METHODS)}")
    if family is not None and name not in APPLIES[family]:
        raise ScanbenchError(f"method {name!r} does not apply to {family} backbones; those take "
                             f"{', '.join(APPLIES[family])}")


def methods_for(family: str, methods: list[str] | tuple[str, ...]) -> list[str]:
    """The requested methods that apply to a family, in the requested order."""
    for m in methods:
        check_method(m)
    return [m for m in methods if m in APPLIES[family]]


def make_explainer(name: str, model: nn.Module, spec: BackboneSpec, **params: Any) -> Explainer:
    check_method(name, spec.family)
    from . import _load_all  # noqa: F401  (registers every method)

    if name not in _REGISTRY:
        raise ScanbenchError(f"method {name!r} is declared but not implemented")
    return _REGISTRY[name](model, spec, **params)


def validate_method_params(params: dict) -> None:
    """Each family's baselines (explain.baselines) are registered methods that apply to that family."""
    for family, methods in params.get("explain", {}).get("baselines", {}).items():
        for m in methods:
            check_method(m, family)
