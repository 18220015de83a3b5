"""Score SCAN decoders on the evaluation images: one model, image and engine load for many decoders
(the ablation and data-scaling stages)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .backbones import get_backbone, load_target
from .config import data_root
from .data import eval_indices, load_images, load_manifest
from .engine import target_engine
from .metrics import evaluate_maps
from .scan.explainer import SCANExplainer


class ScanScorer:
    """The first `n_images` evaluation images of a backbone (all when None), its target model (on `device`) and
    engine."""

    def __init__(self, backbone: str, params: dict, manifest: str | Path, n_images: int | None = None,
                 device: torch.device | str = "cpu"):
        self.params = params
        self.spec = get_backbone(backbone)
        self.model = load_target(self.spec.name, f"models/targets/{self.spec.name}/model.pt", device=device)
        table = load_manifest(manifest)
        self.indices = eval_indices(table, params)[:n_images]
        self.images = load_images(data_root(params), table["path"].to_numpy()[self.indices], self.spec.input_size)
        self.labels = torch.from_numpy(table["label"].to_numpy()[self.indices])
        with torch.no_grad():
            self.classes = self.model(self.images.to(device)).argmax(1).cpu()
        ev = params["evaluate"]
        self.engine = target_engine(self.spec.name, "models/targets", ev["engine"], batch_size=ev["batch_size"],
                                    model=self.model, device=device)
        if self.engine.kind == "torch":   # the perturbation test's copies are built where the model runs
            self.images = self.images.to(device)

    def score(self, decoder_path: str | Path, p: float) -> tuple[torch.Tensor, dict]:
        """(maps, evaluate_maps result) of the decoder at inference percentile p."""
        params, ev = self.params, self.params["evaluate"]
        explainer = SCANExplainer(self.model, self.spec, decoder_path=str(decoder_path), p=p,
                                  batch_size=params["explain"]["batch_size"], seed=params["seed"])
        maps = explainer.explain(self.images, self.classes)
        result = evaluate_maps(self.engine, self.images, maps, self.labels, self.classes, grid=self.spec.grid,
                               fractions=ev["fractions"], n_resamples=ev["bootstrap"], seed=params["seed"])
        result.pop("throughput", None)   # a run fact, never part of an output
        return maps, result

    def example_maps(self, maps: torch.Tensor, n: int) -> dict[str, np.ndarray]:
        return {"maps": maps[:n].cpu().numpy().astype(np.float16), "indices": self.indices[:n]}
