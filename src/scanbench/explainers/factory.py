"""Build any method with its settings from params.yaml, so every stage (explain, sanity, timing,
ablations) configures a method the same way."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from ..backbones import BackboneSpec
from ..errors import ScanbenchError
from .base import Explainer, make_explainer


def explainer_params(method: str, params: dict[str, Any], engine=None,
                     decoder_path: str | Path | None = None) -> dict[str, Any]:
    """The keyword arguments `make_explainer` takes for `method` under these params."""
    ex = params["explain"]
    kwargs: dict[str, Any] = {"seed": int(params["seed"]), "batch_size": int(ex["batch_size"])}
    if method == "lime":
        kwargs.update(num_samples=ex["lime"]["num_samples"], forward_batch_size=ex["lime"]["batch_size"],
                      engine=engine)
    elif method == "rise":
        r = ex["rise"]
        kwargs.update(n_masks=r["n_masks"], s=r["s"], p1=r["p1"], forward_batch_size=r["batch_size"],
                      engine=engine)
    elif method == "centre":
        if "sigma" not in (ex.get("centre") or {}):
            raise ScanbenchError("params: explain.centre.sigma is missing (the centre prior's Gaussian sigma as a "
                                 "fraction of the image side, e.g. 0.25)")
        kwargs.update(sigma=ex["centre"]["sigma"])
    elif method in ("lrp", "partial_lrp"):
        # the relevance rule of the Linear layers and the stabiliser of every division (explain.<method>)
        kwargs.update(ex.get(method) or {})
    elif method == "scan":
        kwargs.update(decoder_path=decoder_path, p=params["p"])
    return kwargs


def explainer_from_params(method: str, model: nn.Module, spec: BackboneSpec, params: dict[str, Any],
                          engine=None, decoder_path: str | Path | None = None) -> Explainer:
    """`make_explainer(method, ...)` with explain.* / p (SCAN's inference percentile) / seed from params.

    `engine` (a ForwardEngine) serves the forward-only methods (lime, rise); `decoder_path` is SCAN's decoder.
    """
    return make_explainer(method, model, spec, **explainer_params(method, params, engine, decoder_path))
