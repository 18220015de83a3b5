"""Every check of params that needs no data and no model, in one call, before any compute: the check_params stage
(which every other stage runs after, through its marker output) and `python -m scanbench.profile` make it.

    check_all_params(params)    # ScanbenchError: one line naming the key

Order matters for the message: names are checked against the registries first (a misspelt backbone is named as
such, not as an `ablation.backbones` entry missing from `backbones`), then the values (config.validate_params),
then the methods and their settings.
"""
from __future__ import annotations

from typing import Any

from .backbones import validate_backbone_params
from .config import check_param_keys, validate_params
from .explainers.base import validate_method_params


def check_all_params(params: dict[str, Any]) -> list[str]:
    """Keys, backbone and layer names, values, method names and settings; returns the dotted keys."""
    keys = check_param_keys(params)     # unknown keys first: a misspelt key is named as one
    validate_backbone_params(params)    # backbones, families, ablation.backbones, scan.layers, ablation.layers
    validate_params(params)             # values (percentiles, counts, compute, ...)
    validate_method_params(params)      # explain.baselines, sanity.methods, timing.methods, explain.<method>
    return keys
