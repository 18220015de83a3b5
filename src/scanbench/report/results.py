"""One run's results as one tidy long-form table (tables.py holds the paper's values in the same form).

The report reads exactly the files the params name (`result_files`) from one run's folder,
results/<profile>/; nothing else in the folder is looked at, and a missing file is an error naming the stage
that writes it. Every number becomes one row of:

    part      the stage output: targets, train_scan, diagnostics, scaling, evaluate, sanity, sanity_maps,
              ablation_<kind>, grid, (timing)
    backbone, family, method, setting     what was measured ("" where not applicable)
    variant   the JSON object the number sat in ("fair" / "full" / "calibration" for evaluate; "" top level)
    metric    its key; x the abscissa for curve points (NaN otherwise); value; ci_lo / ci_hi its interval
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..config import ABLATION_PARAM, ablation_backbones, setting_name
from ..errors import ScanbenchError
from ..explainers.base import registered_methods
from ..io import read_json

COLUMNS = ["part", "backbone", "family", "method", "setting", "variant", "metric", "x", "value", "ci_lo", "ci_hi"]
# What each method declares (scanbench.explainers): the order methods appear in tables and figures (the paper's
# Table I / II order, then the calibration rows: the random map, then the centre prior), their labels, and which
# are calibration rows.
METHOD_ORDER = list(registered_methods())
METHOD_LABELS = {m: cls.label for m, cls in registered_methods().items()}
# Named settings in display order (numeric settings sort by value, before these).
SETTING_ORDER = ["original", "random_weights", "random_label", "full", "scan", "default", "alt1", "shallower",
                 "alt2", "shallowest", "deeper", "alpha1", "no_mask", "no_blur", "sigmoid"]
# Calibration rows compete for nothing: they are scored against the real methods but never take a win away.
# The random map should score AUC-D ~0; the centre prior (the same centred Gaussian for every image) is what a
# map gets from where objects usually are, without looking at the image.
CALIBRATION_METHODS = tuple(m for m, cls in registered_methods().items() if cls.calibration)


def setting_number(setting: Any) -> float | None:
    """The number in a setting ("95" -> 95.0, "p95" -> 95.0), else None."""
    match = re.search(r"-?\d+(?:\.\d+)?", str(setting))
    return float(match.group()) if match else None


def method_sort_key(method: str) -> tuple[float, str]:
    # methods we do not know go just before the calibration rows
    first_calibration = min(METHOD_ORDER.index(m) for m in CALIBRATION_METHODS)
    return (METHOD_ORDER.index(method) if method in METHOD_ORDER else first_calibration - 0.5, method)


def setting_sort_key(setting: str) -> tuple:
    try:
        return (0, float(setting), setting)
    except ValueError:
        return (1, SETTING_ORDER.index(setting) if setting in SETTING_ORDER else len(SETTING_ORDER), setting)


def sort_methods(methods: Sequence[str]) -> list[str]:
    return sorted(methods, key=method_sort_key)


def families_of(params: Mapping[str, Any]) -> dict[str, str]:
    """backbone -> family, from params `families` (which the profile check validates against the registry)."""
    families = {b: fam for fam, members in params.get("families", {}).items() for b in members}
    missing = [b for b in params.get("backbones", []) if b not in families]
    if missing:
        raise ScanbenchError(f"params: backbone(s) {', '.join(missing)} in no `families` list")
    return families


# ---------------------------------------------------------------------------------------------- our results

@dataclass(frozen=True)
class ResultFile:
    path: str           # relative to the run's results folder
    stage: str          # the DVC stage that writes it
    part: str
    backbone: str
    method: str = ""
    setting: str = ""


def result_files(params: Mapping[str, Any]) -> list[ResultFile]:
    """Every file of one run that the report reads, as the params name them (see dvc.yaml)."""
    families = families_of(params)
    layers = [setting_name(x) for x in params.get("scan", {}).get("layers", ["default"])]
    files = []
    for b in params.get("backbones", []):
        fam = families[b]
        files.append(ResultFile(f"targets/{b}.json", "targets", "targets", b))
        for layer in layers:
            files += [ResultFile(f"train_scan/{b}/{layer}/summary.json", "train_scan", "train_scan", b, setting=layer),
                      ResultFile(f"train_scan/{b}/{layer}/curves.csv", "train_scan", "train_scan", b, setting=layer)]
        files.append(ResultFile(f"diagnostics/{b}.json", "diagnose_scan", "diagnostics", b))
        if params.get("scaling"):
            files.append(ResultFile(f"scaling/{b}.json", "scaling", "scaling", b, "scan"))
        for m in ["scan", *params.get("explain", {}).get("baselines", {}).get(fam, [])]:
            stage = "evaluate_scan" if m == "scan" else f"evaluate_{fam}"
            files.append(ResultFile(f"evaluate/{b}/{m}.json", stage, "evaluate", b, m))
        for m in params.get("sanity", {}).get("methods", {}).get(fam, []):
            files.append(ResultFile(f"sanity/{b}/{m}.json", f"sanity_{fam}", "sanity", b, m))
            files.append(ResultFile(f"sanity_maps/{b}/{m}.json", f"sanity_{fam}", "sanity_maps", b, m))
        if params.get("grid"):   # the grid pointing game: every method the explain stages run
            for m in grid_methods(params, fam):
                files.append(ResultFile(f"grid/{b}/{m}.json", "grid_scan" if m == "scan" else f"grid_{fam}", "grid",
                                        b, m))
    ablation = params.get("ablation", {})
    for kind, key in ABLATION_PARAM.items():
        for b in ablation_backbones(dict(params), kind):
            for s in map(setting_name, ablation.get(key, [])):
                files.append(ResultFile(f"ablation/{kind}/{b}/{s}.json", f"ablate_{kind}", f"ablation_{kind}", b,
                                        "scan", s))
    return files


def grid_methods(params: Mapping[str, Any], family: str) -> list[str]:
    """The methods the grid stages run on a backbone of `family`: SCAN and the family's explain baselines."""
    return ["scan", *params.get("explain", {}).get("baselines", {}).get(family, [])]


GRID_LISTS = ("per_tile", "mosaics")   # a grid JSON's per-tile scores and mosaics: read by report/paired.py


def tidy(obj: Mapping[str, Any], intervals: Mapping[str, str] | None = None, **keys: Any) -> list[dict]:
    """One JSON object -> long rows: each numeric leaf is a row. Its interval is the pair under
    `<key>_ci` (or intervals[metric]); `*_curve` lists become curve points over the object's `fractions`."""
    flat = pd.json_normalize(dict(obj)).iloc[0].to_dict() if obj else {}
    rows = []
    for key, value in flat.items():
        *path, metric = key.split(".")
        row = {**keys, "variant": path[-1] if path else "", "metric": metric}
        if _is_number(value):
            ci = flat.get((intervals or {}).get(metric, f"{key}_ci"))
            lo, hi = ci if isinstance(ci, list) and len(ci) == 2 else (math.nan, math.nan)
            rows.append({**row, "value": float(value), "ci_lo": lo, "ci_hi": hi})
        elif metric.endswith("_curve") and isinstance(value, list):
            rows += [{**row, "x": x, "value": y} for x, y in zip(flat["fractions"], value)]
    return rows


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.number)) and not isinstance(v, bool) and not math.isnan(v)


def long_table(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=COLUMNS)
    for c in ("method", "setting", "variant", "family"):
        df[c] = df[c].astype(object).fillna("")
    return df.astype({c: float for c in ("x", "value", "ci_lo", "ci_hi")})


def _read(path: Path, stage: str) -> Any:
    if not path.exists():
        raise ScanbenchError(f"{path} is missing: run the `{stage}` stage (dvc repro {stage})")
    if path.suffix == ".csv":
        return pd.read_csv(path)
    try:
        return read_json(path)
    except ValueError as err:  # a truncated or hand-edited file: name it
        raise ScanbenchError(f"{path} is not valid JSON ({err}); re-run the `{stage}` stage") from err


def load_results(results_dir: str | Path, params: Mapping[str, Any]) -> pd.DataFrame:
    """The run's results (the files `result_files(params)` names, under results_dir) as one long table."""
    root, families = Path(results_dir), families_of(params)
    rows: list[dict] = []
    drops: dict[str, dict[str, list]] = {}     # backbone -> method -> per-image Drop%, for Win%
    for f in result_files(params):
        data = _read(root / f.path, f.stage)
        keys = {"part": f.part, "backbone": f.backbone, "family": families[f.backbone], "method": f.method,
                "setting": f.setting}
        if f.path.endswith(".csv"):        # training curves: a point per logged optimiser step and column
            x = next((data[c] for c in ("step", "epoch") if c in data), pd.Series(range(len(data))))
            rows += [{**keys, "metric": c, "x": xi, "value": v} for c in data.columns if c not in ("epoch", "step")
                     for xi, v in zip(x, data[c]) if _is_number(v)]
        elif f.part == "sanity":           # {setting: {auc_d, ...}}
            rows += [r for s, v in data.items() if isinstance(v, dict) for r in tidy(v, **{**keys, "setting": s})]
        elif f.part == "sanity_maps":      # {mode: {setting: {spearman, ssim, hog, ...}}, random_label: {...}}
            rows += sanity_map_rows(data, keys)
        elif f.part == "scaling":          # one row per training-set size: the size is the setting
            rows += [r for row in data.get("rows", [])
                     for r in tidy({**row, "n_images": data.get("n_images")},
                                   **{**keys, "setting": str(row["n_train"])})]
        elif f.part == "diagnostics":      # held-out checks of one decoder: its layer is the setting
            rows += tidy(data, **{**keys, "setting": data.get("layer", "default")})
        elif f.part == "grid":             # the means and intervals; the per-tile lists go to the paired rows
            rows += tidy({k: v for k, v in data.items() if k not in GRID_LISTS}, **keys)
        else:
            rows += tidy(data, **keys)
            if f.part == "evaluate" and (data.get("per_image") or {}).get("drop") is not None:
                drops.setdefault(f.backbone, {})[f.method] = data["per_image"]["drop"]
    for b, per_method in drops.items():
        rows += [{"part": "evaluate", "backbone": b, "family": families[b], "method": m, "metric": "win",
                  "value": w} for m, w in win_rates(per_method).items() if w is not None]
    return long_table(rows)


SANITY_MAP_MODES = ("cascading", "independent", "random_label", "other_image")


def sanity_map_rows(data: Mapping[str, Any], keys: Mapping[str, Any]) -> list[dict]:
    """A sanity_maps JSON as rows: variant = the randomisation (cascading / independent / random_label), setting =
    its depth (the share of blocks, "0" ... "1") or group (stem, blocks.<i>, head); "" for random_label and
    other_image (the reference: another image's map from the trained model). Per-image
    values and the lists of randomised groups stay in the JSON."""
    rows = []
    for mode in SANITY_MAP_MODES:
        block = data.get(mode) or {}
        for setting, rec in ([("", block)] if mode in ("random_label", "other_image") else block.items()):
            scalars = {k: v for k, v in rec.items() if k not in ("per_image", "randomised")}
            rows += [{**r, "variant": mode} for r in tidy(scalars, **{**keys, "setting": setting})]
    return rows


def win_rates(per_image_drop: Mapping[str, Sequence[float]],
              calibration: Sequence[str] = CALIBRATION_METHODS, atol: float = 1e-9) -> dict[str, float | None]:
    """Win%: the share of images (percent) on which a method's Drop% is the lowest among the methods compared.

    Ties count as a win for each tied method. Calibration methods (random map, centre prior) are not competitors:
    their Win% is the share of images on which they would tie or beat every real method, so adding the
    calibration row changes nobody else's score. NaN drops never win.
    """
    if not per_image_drop:
        return {}
    arrays = {m: np.asarray(v, dtype=np.float64) for m, v in per_image_drop.items()}
    lengths = {m: a.shape for m, a in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise ScanbenchError(f"per-image drop arrays differ in length across methods ({lengths}): re-run "
                             f"`evaluate` so every method is scored on the same images")
    arrays = {m: np.where(np.isnan(a), np.inf, a) for m, a in arrays.items()}
    competitors = [m for m in arrays if m not in calibration] or list(arrays)
    best = np.min(np.stack([arrays[m] for m in competitors]), axis=0)
    n = len(best)
    return {m: (float(np.mean(a <= best + atol)) * 100.0 if n else None) for m, a in arrays.items()}
