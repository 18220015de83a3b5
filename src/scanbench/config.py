"""params.yaml -> a plain dict, plus the few derived values every stage needs.

No registry import here: every stage reads params, so this module stays a small dependency of all of them.
Names of backbones and methods are checked where the registries are (backbones.validate_backbone_params,
explainers.base.validate_method_params), by the stages that use them and by `python -m scanbench.profile`.
"""
from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import ScanbenchError

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA_ROOT_ENV = "SCANBENCH_DATA_ROOT"


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ScanbenchError(f"params file not found: {path} (run from the repo root, or pick a profile: "
                             f"python -m scanbench.profile default)")
    with open(path) as fh:
        params = yaml.safe_load(fh)
    validate_params(params)
    return params


def validate_params(params: dict[str, Any]) -> None:
    """Reject values that would give wrong results silently; each message names the param."""
    scan = params.get("scan", {})
    alpha = scan.get("alpha", 4)
    if not isinstance(alpha, (int, float)) or alpha <= 0:
        raise ScanbenchError(f"scan.alpha must be > 0 (got {alpha!r})")
    for key in ("p_infer", "p_train_low", "p_train_high"):
        if key in scan:
            check_percentile(scan[key], f"scan.{key}")
    for p in params.get("ablation", {}).get("percentiles", []):
        check_percentile(p, "ablation.percentiles")
    for a in params.get("ablation", {}).get("alphas", []):
        if a <= 0:
            raise ScanbenchError(f"ablation.alphas must all be > 0 (got {a!r})")
    if "backbones" in params:
        extra = set(params.get("ablation", {}).get("backbones", [])) - set(params["backbones"])
        if extra:
            raise ScanbenchError(f"ablation.backbones lists {', '.join(sorted(extra))}, not in backbones")


# ablation kind -> the ablation.* list of its settings
ABLATION_PARAM = {"alpha": "alphas", "layer": "layers", "p": "percentiles", "components": "components"}


def setting_name(value: Any) -> str:
    """A params list entry as the ablation stage names its output (95 and 95.0 -> "95", as DVC renders it)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def check_percentile(p: Any, name: str = "P") -> float:
    if not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise ScanbenchError(f"{name} must be a percentile in [0, 100] (got {p!r})")
    return float(p)


def configured_data_root(params: dict[str, Any]) -> str:
    """The data root as configured ($SCANBENCH_DATA_ROOT, else data.root), unresolved."""
    return os.environ.get(DATA_ROOT_ENV) or str(params.get("data", {}).get("root") or "")


def data_root(params: dict[str, Any]) -> Path:
    """The dataset root: $SCANBENCH_DATA_ROOT if set, else params data.root (relative to the repo root)."""
    raw = os.environ.get(DATA_ROOT_ENV) or params.get("data", {}).get("root")
    if not raw:
        raise ScanbenchError(f"no data root: set data.root in params.yaml or ${DATA_ROOT_ENV}")
    root = Path(raw)
    if not root.is_absolute():
        root = (Path.cwd() / root).resolve()
    if not root.is_dir():
        raise ScanbenchError(f"data root {root} does not exist: set data.root in params.yaml or ${DATA_ROOT_ENV}")
    return root


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def set_threads(n: int | None = None) -> None:
    """Use every core for intra-op work (2 here); one interop thread avoids oversubscription."""
    import torch

    n = n or os.cpu_count() or 1
    torch.set_num_threads(n)
