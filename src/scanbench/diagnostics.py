"""Does a trained SCAN decoder generalise? Held-out checks beyond the confidence area.

The confidence area alone cannot tell a decoder that explains each image from one that paints the same
blob on every image. On held-out images at the inference percentile this measures:
  - recon_err:       MSE of the reconstruction against the blurred target (Eq. 7), as in training;
  - mean_image_err:  MSE of the best image-independent guess, the mean target of the training images;
  - recon_skill:     1 - recon_err / mean_image_err (> 0: the features told the decoder something);
  - conf_image_std:  std over images of the confidence at each pixel, averaged over pixels (0: the map
                     ignores the image);
  - train_conf_area, train_recon_err: the same area and MSE on n_reference training images (a seeded subset
                     of every class: the store is sorted by class; same P, eval mode). An area as far below
                     1/(1+alpha) on the training images as on held-out ones says the shortfall is the loss's
                     balance at this reconstruction error, not overfitting.
Kept out of scanbench.scan on purpose: the decoders' stages do not depend on this file.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn

from .compute import module_device
from .features import FeatureSet, training_rows
from .scan.loss import confidence, make_target
from .scan.train import decoder_input, load_batch


@torch.no_grad()
def mean_target(fs: FeatureSet, grid: int, n: int, batch_size: int = 32, variant: str = "full") -> torch.Tensor:
    """Mean reconstruction target (3 x H x W) over the first n images of a feature set."""
    n = min(n, len(fs))
    total = None
    for start in range(0, n, batch_size):
        # only the images: F and G of the reference images are never needed
        images01 = torch.from_numpy(np.asarray(fs.images[start:min(start + batch_size, n)], dtype=np.float32) / 255.0)
        s = make_target(images01, grid, variant).sum(0)
        total = s if total is None else total + s
    return total / max(n, 1)


@torch.no_grad()
def _decode(decoder: nn.Module, fs: FeatureSet, rows: np.ndarray, p: float, variant: str,
            batch_size: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image reconstruction MSE, reconstruction targets and confidence maps for the given rows."""
    grid = decoder.kwargs["grid"]
    recon, targets, maps = [], [], []
    for start in range(0, len(rows), batch_size):
        F, G, images01 = load_batch(fs, rows[start:start + batch_size], module_device(decoder))
        out = decoder(decoder_input(F, G, p, variant))
        target = make_target(images01, grid, variant)
        recon.append(((target - out[:, 1:]) ** 2).mean((1, 2, 3)))
        targets.append(target)
        maps.append(confidence(out[:, 0], variant))
    return torch.cat(recon), torch.cat(targets), torch.cat(maps)


@torch.no_grad()
def decoder_generalisation(decoder: nn.Module, train_set: FeatureSet, holdout_set: FeatureSet, p: float,
                           variant: str = "full", n_reference: int = 200, batch_size: int = 32) -> dict:
    decoder.eval()
    ref_rows = training_rows(len(train_set), n_reference, seed=0)
    n_ref = len(ref_rows)
    # one pass over the reference training images: their area and error, and their mean target (the reference)
    train_recon, train_targets, train_C = _decode(decoder, train_set, ref_rows, p, variant, batch_size)
    reference = train_targets.mean(0)   # on the decoder's device, as the held-out targets are
    recon, targets, C = _decode(decoder, holdout_set, np.arange(len(holdout_set)), p, variant, batch_size)
    recon_err = recon.mean().item()
    mean_image_err = ((targets - reference) ** 2).mean((1, 2, 3)).mean().item()
    return {"p": float(p), "n_holdout": int(C.shape[0]), "n_reference": int(n_ref),
            "recon_err": recon_err, "mean_image_err": mean_image_err,
            "recon_skill": 1.0 - recon_err / mean_image_err if mean_image_err > 0 else float("nan"),
            "conf_area": C.mean().item(), "conf_image_std": C.std(0).mean().item() if C.shape[0] > 1 else 0.0,
            "train_conf_area": train_C.mean().item(), "train_recon_err": train_recon.mean().item()}
