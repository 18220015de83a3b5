"""SCAN at inference (docs/METHODS.md §1.6): features and gradient at the decoder's layer, mask at P, decode, C = map.

    explainer = SCANExplainer(model, spec, decoder_path="models/scan/B/default/decoder.pt", p=95)
    maps = explainer.explain(images01, classes)                     # B x H x W in [0, 1]
    maps, recon01 = explainer.explain_with_reconstruction(images01, classes)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as Fn

from ..config import check_percentile
from ..errors import ScanbenchError
from ..explainers.base import Explainer, normalize_maps, upsample_maps
from ..hooks import features_and_grads
from .loss import confidence
from .train import decoder_input, load_decoder


class SCANExplainer(Explainer):
    def __init__(self, model: nn.Module, spec, decoder_path: str | None = None, p: float = 95,
                 layer: str | None = None, **kw: Any):
        super().__init__(model, spec, **kw)
        if not decoder_path:
            raise ScanbenchError("SCAN needs decoder_path: the decoder checkpoint written by train_scan")
        self.p = check_percentile(p, "p")
        self.decoder, self.meta = load_decoder(decoder_path, spec.name, device=self.device)
        self.layer = spec.resolve_layer(self.meta["layer"])
        if layer is not None and spec.resolve_layer(layer) != self.layer:
            raise ScanbenchError(f"decoder {decoder_path} was trained on layer {self.layer!r}, "
                                 f"not {spec.resolve_layer(layer)!r}")
        self.variant = self.meta.get("variant", "full")

    def _decode(self, images01: torch.Tensor, classes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(C, Y_r): confidence B x H x W in [0, 1] and reconstruction B x 3 x H x W in [-1, 1]."""
        if self.decoder_device != self.device:   # the model moved after this explainer was built
            self.decoder = self.decoder.to(self.device)
        _, F, G = features_and_grads(self.model, self.layer, images01, classes)
        with torch.no_grad():
            out = self.decoder(decoder_input(F, G, self.p, self.variant))
        return confidence(out[:, 0], self.variant), out[:, 1:]

    def _explain(self, images01: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        return self._decode(images01, classes)[0]

    def explain_with_reconstruction(self, images01: torch.Tensor,
                                    classes: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Maps as `explain`, plus the decoder's reconstruction mapped from [-1, 1] to [0, 1] (at the input size)."""
        classes = self.check_inputs(images01, classes)
        out_device, x = images01.device, images01.to(self.device)
        maps, recons = [], []
        for i in range(0, x.shape[0], self.batch_size):
            C, rec = self._decode(x[i:i + self.batch_size], classes[i:i + self.batch_size])
            maps.append(normalize_maps(upsample_maps(torch.nan_to_num(C.float()), x.shape[-1])))
            if rec.shape[-1] != x.shape[-1]:   # reconstructed at scan.out_size: shown at the input's
                rec = Fn.interpolate(rec.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
            recons.append(((rec.float() + 1) / 2).clamp(0, 1))
        return torch.cat(maps).to(out_device), torch.cat(recons).to(out_device)

    @property
    def decoder_device(self) -> torch.device:
        return next(self.decoder.parameters()).device
