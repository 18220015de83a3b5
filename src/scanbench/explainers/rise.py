"""RISE (Petsiuk et al. 2018), in-house and batched.

N binary grids s x s (each cell kept with probability p1) are upsampled bilinearly to (s+1) * cell
(cell = ceil(H / s)) and cropped to H x W at a random shift in [0, cell) per axis, so mask edges do not
all fall on the same lines. Saliency of class c: sum_i f_c(x * M_i) M_i / (N p1), f_c the softmax
probability. Masks are fixed by the seed (the same for every image) and built chunk by chunk, so memory
stays at one forward batch of masks. The seeded grids are drawn on the CPU (the same on every device); the
masks and the saliency are built on the input's device.
"""
from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from ..errors import ScanbenchError
from ..probabilities import class_probs
from ._forward import model_forward
from .base import Explainer, MethodSettings, register_explainer


@register_explainer("rise", families=("cnn", "vit"), label="RISE", order=120, forward_only=True)
class RiseExplainer(Explainer):
    @dataclasses.dataclass(frozen=True)
    class Settings(MethodSettings):
        """explain.rise: N = `n_masks` masks on an `s` x `s` grid, each cell kept with probability `p1`;
        `batch_size` masked images per forward."""
        n_masks: int = 4000
        s: int = 8
        p1: float = 0.5
        batch_size: int = 100

        def check(self, method: str) -> None:
            if int(self.n_masks) < 1:
                raise ScanbenchError(f"explain.{method}.n_masks must be >= 1 (got {self.n_masks!r})")
            if int(self.s) < 1:
                raise ScanbenchError(f"explain.{method}.s must be >= 1 (got {self.s!r})")
            if not 0 < float(self.p1) <= 1:
                raise ScanbenchError(f"explain.{method}.p1 must be in (0, 1] (got {self.p1!r})")
            if int(self.batch_size) < 1:
                raise ScanbenchError(f"explain.{method}.batch_size must be >= 1 (got {self.batch_size!r})")

        def kwargs(self) -> dict:
            return {"n_masks": self.n_masks, "s": self.s, "p1": self.p1, "forward_batch_size": self.batch_size}

    def __init__(self, model, spec, n_masks: int = Settings.n_masks, s: int = Settings.s, p1: float = Settings.p1,
                 forward_batch_size: int = Settings.batch_size, engine=None, **kwargs):
        super().__init__(model, spec, **kwargs)
        self.Settings(n_masks=n_masks, s=s, p1=p1, batch_size=forward_batch_size).check(self.name)
        self.n_masks, self.s, self.p1 = int(n_masks), int(s), float(p1)
        self.forward_batch_size = int(forward_batch_size)
        self.engine = engine
        gen = torch.Generator().manual_seed(self.seed)
        self.grids = (torch.rand(self.n_masks, self.s, self.s, generator=gen) < self.p1).float()
        # Shift as a fraction of the cell, so one seed fixes the masks at any image size.
        self.shift_frac = torch.rand(self.n_masks, 2, generator=gen)

    def cell_size(self, h: int, w: int) -> int:
        return math.ceil(max(h, w) / self.s)

    def shifts(self, h: int, w: int) -> torch.Tensor:
        """N x 2 integer (row, column) crop offsets in [0, cell)."""
        return (self.shift_frac * self.cell_size(h, w)).long()

    def masks(self, start: int, stop: int, h: int, w: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """Masks start..stop-1 as an (stop - start) x h x w float tensor in [0, 1], on `device`."""
        cell = self.cell_size(h, w)
        up = (self.s + 1) * cell
        big = F.interpolate(self.grids[start:stop, None].to(device), size=(up, up), mode="bilinear",
                            align_corners=False)[:, 0]
        sh = self.shifts(h, w)[start:stop].to(device)
        rows = sh[:, 0, None] + torch.arange(h, device=device)
        cols = sh[:, 1, None] + torch.arange(w, device=device)
        idx = torch.arange(big.shape[0], device=device)[:, None, None]
        return big[idx, rows[:, :, None], cols[:, None, :]]

    def _explain(self, images01, classes):
        b, _, h, w = images01.shape
        device = images01.device
        sal = torch.zeros(b, h, w, device=device)
        for start in range(0, self.n_masks, self.forward_batch_size):
            m = self.masks(start, min(start + self.forward_batch_size, self.n_masks), h, w, device)
            for j in range(b):  # one forward batch = one image under a chunk of masks
                # the image again (the grid pointing game explains each mosaic once per tile class): the masks
                # are the same for every image, so are the probabilities
                if j == 0 or not torch.equal(images01[j], images01[j - 1]):
                    probs = class_probs(model_forward(self.model, self.engine), images01[j:j + 1] * m[:, None])
                sal[j] += torch.einsum("n,nhw->hw", probs[:, int(classes[j])], m)
        return sal / (self.n_masks * self.p1)
