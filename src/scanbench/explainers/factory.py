"""Build any method with its settings from params.yaml, so every stage (explain, sanity, timing,
ablations) configures a method the same way: the method's own declaration says what it takes
(`Explainer.params_kwargs`: seed, explain.batch_size, its explain.<method> settings, and the forward engine or
SCAN's decoder where it uses them)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch.nn as nn

from ..backbones import BackboneSpec
from .base import Explainer, check_method, make_explainer, registered_methods


def explainer_params(method: str, params: dict[str, Any], engine=None,
                     decoder_path: str | Path | None = None) -> dict[str, Any]:
    """The keyword arguments `make_explainer` takes for `method` under these params."""
    check_method(method)
    return registered_methods()[method].params_kwargs(params, engine=engine, decoder_path=decoder_path)


def explainer_from_params(method: str, model: nn.Module, spec: BackboneSpec, params: dict[str, Any],
                          engine=None, decoder_path: str | Path | None = None) -> Explainer:
    """`make_explainer(method, ...)` with explain.* / p (SCAN's inference percentile) / seed from params.

    `engine` (a ForwardEngine) serves the forward-only methods (lime, rise); `decoder_path` is SCAN's decoder.
    """
    check_method(method, spec.family)
    return make_explainer(method, model, spec, **explainer_params(method, params, engine, decoder_path))
