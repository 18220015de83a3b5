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


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise ScanbenchError(f"params file not found: {path} (run from the repo root, or pick a profile: "
                             f"python -m scanbench.profile default)")
    try:
        with open(path) as fh:
            params = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ScanbenchError(f"{path} is not valid YAML ({problem} at {where}): fix that line, or restore a "
                             f"profile: python -m scanbench.profile default") from err
    if not isinstance(params, dict):
        raise ScanbenchError(f"{path} holds no params (a YAML mapping of keys expected): restore a profile: "
                             f"python -m scanbench.profile default")
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
    if "evaluate" in params and "fractions" in params["evaluate"]:
        check_fractions(params["evaluate"]["fractions"])
    check_image_counts(params)


def check_fractions(fractions: Any) -> None:
    """evaluate.fractions: the x of the AUC (trapezoid), so at least two, strictly increasing, each in [0, 1)."""
    name = "evaluate.fractions"
    if not isinstance(fractions, list) or len(fractions) < 2:
        raise ScanbenchError(f"{name} must be a list of at least 2 removal fractions in [0, 1) (got {fractions!r})")
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ScanbenchError(f"{name} must lie in [0, 1) (got {f!r} in {fractions})")
    for a, b in zip(fractions, fractions[1:]):
        if not a < b:
            raise ScanbenchError(f"{name} must be strictly increasing, without repeats (got {a!r} then {b!r} "
                                 f"in {fractions}): the AUC integrates over them in order")


def _count(value: Any, name: str, allow_null: bool = False) -> int | None:
    if value is None and allow_null:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScanbenchError(f"{name} must be an integer >= 1{' or null' if allow_null else ''} (got {value!r})")
    return value


def check_image_counts(params: dict[str, Any]) -> None:
    """Image counts that need no dataset to check. The evaluation images are the first explain.n_images of a
    seeded val subset, and sanity/ablation/scaling score the first N of those; the checks against the val split's
    size are in data.check_split_sizes (run by `prepare` and wherever the subsets are drawn)."""
    explain = params.get("explain", {})
    if "n_images" not in explain:
        return
    n_eval = _count(explain["n_images"], "explain.n_images")
    if "n_holdout" in params.get("features", {}):
        _count(params["features"]["n_holdout"], "features.n_holdout", allow_null=True)   # null: the rest of val
    for section, allow_null in (("sanity", True), ("ablation", True), ("scaling", True)):
        if "n_images" not in params.get(section, {}):
            continue
        n = _count(params[section]["n_images"], f"{section}.n_images", allow_null)
        if n is not None and n > n_eval:
            raise ScanbenchError(f"{section}.n_images = {n} exceeds explain.n_images = {n_eval}: {section} scores "
                                 f"the first {section}.n_images evaluation images; lower it or raise explain.n_images")
    if "n_images" in params.get("timing", {}):
        _count(params["timing"]["n_images"], "timing.n_images")


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
    """The data root as configured (data.root), unresolved."""
    return str(params.get("data", {}).get("root") or "")


def data_root(params: dict[str, Any]) -> Path:
    """The dataset root: params data.root (relative to the repo root). Only params: DVC sees them, so a changed
    root re-runs the stages that read images (no environment variable overrides it; docs/DECISIONS.md)."""
    raw = params.get("data", {}).get("root")
    if not raw:
        raise ScanbenchError("no data root: set data.root in params.yaml (or `dvc exp run -S data.root=...`)")
    root = Path(raw)
    if not root.is_absolute():
        root = (Path.cwd() / root).resolve()
    if not root.is_dir():
        raise ScanbenchError(f"data root {root} does not exist: set data.root in params.yaml "
                             f"(or `dvc exp run -S data.root=...`)")
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
