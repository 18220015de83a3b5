"""reports/metrics/*.json (DVC metrics, compared with a committed reference in CI by compare.py) from the
long results table. Their keys, nesting and rounding are a contract: change them only with the reference.

Every file is a JSON object keyed by name (backbone, method, layer, setting), never a list: `dvc metrics show/diff`
and `dvc exp show` flatten objects only (a top-level list printed nothing). summary.json holds the headline, small
enough for `dvc exp show` (AUC-D per backbone and method, SCAN's held-out skill); the other files hold the detail."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from ..config import ABLATION_PARAM
from ..io import write_json
from ..per_image_metrics import PER_IMAGE_NAMES
from .results import setting_sort_key, sort_methods
from .tables import best_baseline

AUC_KEYS = ("pos_auc", "neg_auc", "auc_d")
# explanations.json: [lo, hi] 95% intervals (fair variant) of a method's AUC-D (bootstrap over images) and of its
# AUC-D minus SCAN's / the centre prior's / the random map's (paired bootstrap on the same images, report/paired.py)
INTERVAL_KEYS = {"auc_d_ci95": "auc_d", "auc_d_minus_scan_ci95": "auc_d_minus_scan",
                 "auc_d_minus_centre_ci95": "auc_d_minus_centre", "auc_d_minus_random_ci95": "auc_d_minus_random"}
# ablation_<kind>.json: per setting its AUCs, and its AUC-D minus the kind's reference setting's on the same images
# with the paired-bootstrap 95% interval (report/paired.py)
ABLATION_PAIRED = "auc_d_minus_ref"
SANITY_SETTINGS = ("original", "random_weights", "random_label")
# sanity_maps.json: the map similarities after full randomisation (cascading depth "1": every weight) and after
# label randomisation, and the reference level (another image's map, same model); the depths in between are in the
# sanity-similarity table
SIMILARITY_KEYS = ("spearman", "ssim", "hog")
# diagnostics/B.json key -> scan_training.json key (held-out unless named train_)
DIAGNOSTIC_KEYS = {"recon_err": "val_recon_err", "mean_image_err": "val_mean_image_err",
                   "recon_skill": "val_recon_skill", "conf_image_std": "val_conf_image_std",
                   "train_conf_area": "train_confidence_area", "train_recon_err": "train_recon_err"}


def _num(v: Any, ndigits: int = 4) -> float | None:
    """A number rounded for the metric files; missing / NaN is None (never a made-up number)."""
    return None if v is None or math.isnan(v) else round(float(v), ndigits)


def _interval(ci: Any) -> list[float] | None:
    """A (lo, hi) pair rounded like the metrics; None when either end is missing."""
    if ci is None or any(v is None or math.isnan(v) for v in ci):
        return None
    return [_num(ci[0]), _num(ci[1])]


def _count(v: Any) -> int | None:
    return None if v is None or math.isnan(v) else int(v)


def build_metrics(results: pd.DataFrame, scan_alpha: float | None = None) -> dict[str, Any]:
    """All metric files by stem. scan_alpha stands in for a decoder summary that does not record its alpha."""
    points = results[results["x"].isna()]
    indexed = points.set_index(["part", "backbone", "method", "setting", "variant", "metric"])
    value = indexed["value"].to_dict()
    ci = dict(zip(indexed.index, zip(indexed["ci_lo"], indexed["ci_hi"])))
    family = dict(zip(results["backbone"], results["family"]))

    def get(part: str, b: str, metric: str, method: str = "", setting: str = "", variant: str = "") -> Any:
        return value.get((part, b, method, setting, variant, metric))

    def keys(part: str, col: str, **where: str) -> dict[str, list[str]]:
        """backbone (sorted) -> the distinct values of `col` in `part` (filtered by `where`)."""
        sel = points[points["part"] == part]
        for k, v in where.items():
            sel = sel[sel[k] == v]
        return {b: list(dict.fromkeys(g[col])) for b, g in sorted(sel.groupby("backbone"))}

    explanations = {}
    for b, methods in keys("evaluate", "method").items():
        n_images = [n for n in (get("evaluate", b, "n_images", m) for m in methods) if n is not None]
        explanations[b] = {"family": family[b], "n_images": _count(max(n_images, default=None)), "methods": {
            m: {**{k: _num(get("evaluate", b, k, m, variant="fair")) for k in AUC_KEYS},
                **{k: _interval(ci.get(("evaluate", b, m, "", "fair", metric))) for k, metric in INTERVAL_KEYS.items()},
                **{k: _num(get("evaluate", b, k, m)) for k in (*PER_IMAGE_NAMES, "win")}}
            for m in sort_methods(methods)}}
    metrics: dict[str, Any] = {
        "explanations": explanations,
        "sanity": {b: {m: {s: _num(get("sanity", b, "auc_d", m, s)) for s in SANITY_SETTINGS}
                       for m in sort_methods(methods)} for b, methods in keys("sanity", "method").items()},
        "sanity_maps": {b: {m: {name: {k: _num(get("sanity_maps", b, k, m, setting, variant)) for k in SIMILARITY_KEYS}
                                for name, setting, variant in (("all_weights", "1", "cascading"),
                                                               ("random_label", "", "random_label"),
                                                               ("other_image", "", "other_image"))}
                            for m in sort_methods(methods)} for b, methods in keys("sanity_maps", "method").items()},
        "scan_training": {},
        "targets": {b: {"family": family[b], "val_top1": _num(get("targets", b, "val_top1")),
                        "n_val": _count(get("targets", b, "n_val"))} for b in keys("targets", "metric")},
        "calibration": {b: {k: _num(get("evaluate", b, k, "random", variant="calibration")) for k in AUC_KEYS}
                        for b in keys("evaluate", "metric", method="random", variant="calibration")},
    }
    for b, layers in keys("train_scan", "setting").items():
        for layer in sorted(layers):
            alpha = get("train_scan", b, "alpha", setting=layer)
            rec = {"alpha": _num(scan_alpha if alpha is None else alpha),
                   "final_loss": _num(get("train_scan", b, "final_loss", setting=layer), 6),
                   "n_train": _count(get("train_scan", b, "n_train", setting=layer)),
                   "steps": _count(get("train_scan", b, "steps", setting=layer)),
                   **{k: _num(get("train_scan", b, k, setting=layer))
                      for k in ("val_confidence_area", "target_area")}}
            for k, name in DIAGNOSTIC_KEYS.items():   # held-out generalisation (scanbench.diagnostics)
                if get("diagnostics", b, k, setting=layer) is not None:
                    rec[name] = _num(get("diagnostics", b, k, setting=layer))
            metrics["scan_training"].setdefault(b, {})[layer] = rec
    for kind in ABLATION_PARAM:
        part = f"ablation_{kind}"
        metrics[part] = {b: {s: {**{k: _num(get(part, b, k, "scan", s)) for k in AUC_KEYS},
                                 ABLATION_PAIRED: _num(get(part, b, ABLATION_PAIRED, "scan", s)),
                                 f"{ABLATION_PAIRED}_ci95": _interval(ci.get((part, b, "scan", s, "",
                                                                              ABLATION_PAIRED)))}
                             for s in sorted(settings, key=setting_sort_key)}
                         for b, settings in keys(part, "setting").items()}
    metrics["grid"] = build_grid_metrics(points)   # {} without grid results: the file DVC lists still exists
    metrics["summary"] = build_summary(metrics["explanations"], metrics["scan_training"])
    return metrics


# grid.json: per backbone and method, the grid pointing game's means with their 95% bootstrap intervals over
# mosaics, and the paired differences (report/paired.py) to SCAN, the best baseline by share, the centre prior and
# the random map
GRID_KEYS = ("share", "pointing", "in_top4")
GRID_DIFFERENCES = tuple(f"{k}_minus_{r}" for k in ("share", "pointing") for r in ("scan", "best", "centre", "random"))


def _unsigned_zero(v: float | None) -> float | None:
    """A difference that rounds to -0.0 is written 0.0."""
    return None if v is None else v + 0.0


def build_grid_metrics(points: pd.DataFrame) -> dict[str, Any]:
    """grid.json from the long table's `grid` rows: backbone -> n_mosaics, best_baseline, methods -> method ->
    share, share_ci95, pointing, pointing_ci95, in_top4 and each paired difference with its _ci95; empty when the
    run has no grid results."""
    sel = points[points["part"] == "grid"]
    out: dict[str, Any] = {}
    for b, rows in sorted(sel.groupby("backbone")):
        cells = rows.set_index(["method", "metric"])
        value, ci = cells["value"].to_dict(), dict(zip(cells.index, zip(cells["ci_lo"], cells["ci_hi"])))
        methods = sort_methods(list(dict.fromkeys(rows["method"])))
        rec = {m: {} for m in methods}
        for m in methods:
            for k in (*GRID_KEYS, *GRID_DIFFERENCES):
                if (m, k) in value:
                    rec[m][k] = _unsigned_zero(_num(value[(m, k)]))
                    if k != "in_top4":
                        rec[m][f"{k}_ci95"] = [_unsigned_zero(v) for v in _interval(ci[(m, k)]) or []] or None
        n = [value[(m, "n_mosaics")] for m in methods if (m, "n_mosaics") in value]
        best = best_baseline({m: value.get((m, "share")) for m in methods})
        out[b] = {"n_mosaics": _count(max(n, default=None)), "best_baseline": best, "methods": rec}
    return out


def build_summary(explanations: Mapping[str, Any], scan_training: Mapping[str, Any]) -> dict[str, Any]:
    """summary.json, the headline for `dvc exp show`: `auc_d` (backbone -> method -> AUC-D, fair variant, as in
    explanations.json) and `scan_held_out_skill` (backbone -> the main decoder's held-out reconstruction skill, as
    in scan_training.json). The quantity comes first so that its columns (`auc_d.<backbone>.<method>`) are named
    by nothing else and one `--keep 'auc_d\\.|scan_held_out_skill'` selects them. Built from those two files only,
    so it repeats their values exactly. The report stage then adds `claims` (report/claims.py: the verdicts of
    claims.md as 1 / 0 / -1, keyed by claim, backbone and method)."""
    auc_d = {b: {m: v.get("auc_d") for m, v in rec.get("methods", {}).items()}
             for b, rec in sorted(explanations.items())}
    skill = {b: layers["default"]["val_recon_skill"] for b, layers in sorted(scan_training.items())
             if "val_recon_skill" in (layers.get("default") or {})}
    return {"auc_d": auc_d, "scan_held_out_skill": skill}


def write_metrics(metrics: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    paths = [Path(out_dir) / f"{stem}.json" for stem in metrics]
    for path, obj in zip(paths, metrics.values()):
        write_json(path, obj)
    return paths
