"""Paired comparisons: each method's AUC-D minus SCAN's, the centre prior's and the random map's, image by image.

All methods of a backbone are scored on the same evaluation images, so their difference has a much tighter
interval than two separate intervals suggest (an easy image is easy for every method). For each method m and
reference r (SCAN, the centre prior, the random map) one long-table row (see results.py):

    part "evaluate", variant "fair", metric "auc_d_minus_<r>", value = mean over images of
    AUC-D_m - AUC-D_r, ci_lo / ci_hi = its paired-bootstrap 95% interval (scanbench.metrics.bootstrap)

from `variants.fair.per_image_auc_d` of results/<profile>/evaluate/B/M.json, images matched by
`per_image.index` (manifest rows); resamples and seed are the evaluate stage's (`evaluate.bootstrap`, `seed`),
so the draws are those of each method's own `auc_d_ci`. Kept apart from results.py so that the stages importing
the tables (timing) do not depend on the metrics package.

The ablations (Tables VI-IX) likewise: each setting of a kind minus the kind's reference setting
(config.ablation_reference: base alpha, default layer, the top-level p, full SCAN), image by image, as

    part "ablation_<kind>", method "scan", variant "", metric "auc_d_minus_ref", value, ci_lo / ci_hi

from `per_image.auc_d` and `per_image.index` of results/<profile>/ablation/<kind>/B/<setting>.json (the
reference row itself: 0 [0, 0]).

The grid pointing game (results/<profile>/grid/B/M.json) pairs the same way, mosaic by mosaic
(scanbench.grid_pointing.paired_summary: the mean over a mosaic's four tiles is the unit resampled): part "grid",
metric "<share|pointing>_minus_<scan|best|centre|random>", where "best" is the best baseline by share (the method
other than SCAN and the calibration rows with the highest mean share, `tables.best_baseline`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from ..config import ABLATION_PARAM, ablation_reference
from ..errors import ScanbenchError
from ..grid_pointing import paired_summary
from ..metrics.bootstrap import paired_bootstrap_ci
from .results import _read, families_of, load_results, long_table, result_files
from .tables import best_baseline

# reference method -> the metric of the difference to it (a method minus the reference)
PAIRED_REFERENCES = {"scan": "auc_d_minus_scan", "centre": "auc_d_minus_centre", "random": "auc_d_minus_random"}
ABLATION_PAIRED = "auc_d_minus_ref"   # an ablation setting minus its kind's reference setting
VARIANT = "fair"      # the headline variant (maps pooled to the backbone grid)
MEAN_ATOL = 1e-6      # per-image AUC-D (stored to 9 decimals) must average to the file's auc_d


def per_image_auc_d(data: Mapping[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(manifest rows, per-image AUC-D of the fair variant) of one evaluate record; `where` names the file and
    its stage in errors."""
    index = (data.get("per_image") or {}).get("index")
    fair = (data.get("variants") or {}).get(VARIANT) or {}
    values = fair.get("per_image_auc_d")
    if index is None or values is None:
        raise ScanbenchError(f"{where} has no per-image AUC-D (per_image.index, variants.{VARIANT}.per_image_auc_d)")
    return _checked(index, values, fair.get("auc_d"), where, "per_image.index",
                    f"variants.{VARIANT}.per_image_auc_d")


def ablation_per_image(data: Mapping[str, Any], where: str) -> tuple[np.ndarray, np.ndarray]:
    """(manifest rows, per-image AUC-D) of one ablation record (`per_image.index`, `per_image.auc_d`)."""
    per = data.get("per_image") or {}
    if per.get("index") is None or per.get("auc_d") is None:
        raise ScanbenchError(f"{where} has no per-image AUC-D (per_image.index, per_image.auc_d)")
    return _checked(per["index"], per["auc_d"], data.get("auc_d"), where, "per_image.index", "per_image.auc_d")


def _checked(index: Any, values: Any, mean: Any, where: str, index_key: str, values_key: str
             ) -> tuple[np.ndarray, np.ndarray]:
    index, values = np.asarray(index, dtype=np.int64), np.asarray(values, dtype=np.float64)
    if index.ndim != 1 or index.shape != values.shape or len(index) == 0:
        raise ScanbenchError(f"{where}: {index_key} ({index.size}) and {values_key} ({values.size}) must be "
                             f"non-empty lists of the same length")
    if mean is not None and abs(values.mean() - float(mean)) > MEAN_ATOL:
        raise ScanbenchError(f"{where}: the per-image AUC-D average to {values.mean():.6f}, not the file's auc_d "
                             f"{float(mean):.6f}")
    return index, values


def ablation_paired_rows(per_setting: Mapping[str, tuple[np.ndarray, np.ndarray]], reference: str, kind: str,
                         n_resamples: int, seed: int, **keys: Any) -> list[dict]:
    """Long-table rows `auc_d_minus_ref` of one ablation kind on one backbone: each setting's AUC-D minus the
    reference setting's, with the paired-bootstrap 95% interval. The images must match the reference's."""
    if not per_setting:
        return []
    b = keys.get("backbone", "")
    if reference not in per_setting:
        raise ScanbenchError(f"{b}: the {kind} ablation has no {reference} row to compare with: add {reference} to "
                             f"ablation.{ABLATION_PARAM[kind]}")
    ref_index, ref_values = per_setting[reference]
    rows = []
    for s, (index, values) in per_setting.items():
        if not np.array_equal(index, ref_index):
            raise ScanbenchError(f"{b}: the {kind} ablation scored {s} and {reference} on different images "
                                 f"(per_image.index differs): re-run `ablate_{kind}`")
        lo, hi = paired_bootstrap_ci(values, ref_values, n_resamples, seed)
        rows.append({**keys, "part": f"ablation_{kind}", "method": "scan", "setting": s, "variant": "",
                     "metric": ABLATION_PAIRED, "value": float(np.mean(values - ref_values)), "ci_lo": float(lo),
                     "ci_hi": float(hi)})
    return rows


def paired_rows(per_method: Mapping[str, tuple[np.ndarray, np.ndarray]], n_resamples: int, seed: int,
                **keys: Any) -> list[dict]:
    """Long-table rows `auc_d_minus_<reference>` for every method of one backbone against each reference
    present among them (a method against itself gives 0 [0, 0]). The images must match, method by method."""
    if not per_method:
        return []
    first, (index, _) = next(iter(per_method.items()))
    for m, (idx, _) in per_method.items():
        if not np.array_equal(idx, index):
            raise ScanbenchError(f"{keys.get('backbone', '')}: {m} and {first} were evaluated on different images "
                                 f"(per_image.index differs): re-run `evaluate` so every method scores the same images")
    rows = []
    for ref, metric in PAIRED_REFERENCES.items():
        if ref not in per_method:
            continue
        ref_values = per_method[ref][1]
        for m, (_, values) in per_method.items():
            lo, hi = paired_bootstrap_ci(values, ref_values, n_resamples, seed)
            rows.append({**keys, "part": "evaluate", "method": m, "setting": "", "variant": VARIANT,
                         "metric": metric, "value": float(np.mean(values - ref_values)), "ci_lo": float(lo),
                         "ci_hi": float(hi)})
    return rows


def load_paired(results_dir: str | Path, params: Mapping[str, Any]) -> pd.DataFrame:
    """The paired rows of one run (the evaluate files `result_files(params)` names), as a long table."""
    root, families = Path(results_dir), families_of(params)
    ev = params.get("evaluate", {})
    if "bootstrap" not in ev or "seed" not in params:
        raise ScanbenchError("params: evaluate.bootstrap and seed are needed for the paired comparisons")
    per_backbone: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    per_ablation: dict[tuple[str, str], dict[str, tuple[np.ndarray, np.ndarray]]] = {}   # (kind, B) -> setting
    for f in result_files(params):
        where = f"{root / f.path} (stage `{f.stage}`: re-run it)"
        if f.part == "evaluate":
            per_backbone.setdefault(f.backbone, {})[f.method] = per_image_auc_d(_read(root / f.path, f.stage), where)
        elif f.part.startswith("ablation_"):
            per_ablation.setdefault((f.part.removeprefix("ablation_"), f.backbone), {})[f.setting] = \
                ablation_per_image(_read(root / f.path, f.stage), where)
    n_resamples, seed = int(ev["bootstrap"]), int(params["seed"])
    rows = [r for b, per_method in per_backbone.items()
            for r in paired_rows(per_method, n_resamples, seed, backbone=b, family=families[b])]
    rows += [r for (kind, b), per_setting in per_ablation.items()
             for r in ablation_paired_rows(per_setting, ablation_reference(dict(params), kind), kind, n_resamples,
                                           seed, backbone=b, family=families[b])]
    return long_table(rows)


GRID_SCORES = ("share", "pointing")
GRID_REFERENCES = ("scan", "best", "centre", "random")   # "best": the best baseline by share


def grid_per_tile(data: Mapping[str, Any], where: str) -> tuple[list, dict[str, np.ndarray]]:
    """(mosaics, {share, pointing: n x 4}) of one grid record; `where` names the file and its stage in errors."""
    mosaics, per_tile = data.get("mosaics"), data.get("per_tile") or {}
    scores = {k: np.asarray(per_tile.get(k, []), dtype=np.float64) for k in GRID_SCORES}
    n = len(mosaics or [])
    if not n or any(v.shape != (n, 4) for v in scores.values()):
        raise ScanbenchError(f"{where} needs `mosaics` (n x 4 rows) and per_tile share and pointing (n x 4 each)")
    return mosaics, scores


def grid_paired_rows(per_method: Mapping[str, tuple[list, dict[str, np.ndarray]]], n_resamples: int, seed: int,
                     **keys: Any) -> list[dict]:
    """Long-table rows `<score>_minus_<reference>` of every grid method of one backbone against SCAN, the best
    baseline, the centre prior and the random map, where present (a method against itself: 0 [0, 0])."""
    if not per_method:
        return []
    first, (mosaics, _) = next(iter(per_method.items()))
    for m, (other, _) in per_method.items():
        if other != mosaics:
            raise ScanbenchError(f"{keys.get('backbone', '')}: the grid results of {m} and {first} are on different "
                                 f"mosaics: re-run the grid stages so that every method scores the same mosaics")
    best = best_baseline({m: float(v["share"].mean()) for m, (_, v) in per_method.items()})
    refs = {"scan": "scan", "best": best, "centre": "centre", "random": "random"}
    rows = []
    for name in GRID_REFERENCES:
        ref = refs[name]
        if ref not in per_method:
            continue
        for m, (_, scores) in per_method.items():
            for k in GRID_SCORES:
                pair = paired_summary(scores[k], per_method[ref][1][k], n_resamples, seed)
                rows.append({**keys, "part": "grid", "method": m, "setting": "", "variant": "",
                             "metric": f"{k}_minus_{name}", "value": pair["difference"], "ci_lo": pair["ci"][0],
                             "ci_hi": pair["ci"][1]})
    return rows


def load_grid_paired(results_dir: str | Path, params: Mapping[str, Any]) -> pd.DataFrame:
    """The grid pointing game's paired rows of one run (the grid files `result_files(params)` names)."""
    root, families = Path(results_dir), families_of(params)
    per_backbone: dict[str, dict[str, tuple[list, dict[str, np.ndarray]]]] = {}
    for f in result_files(params):
        if f.part == "grid":
            where = f"{root / f.path} (stage `{f.stage}`: re-run it)"
            per_backbone.setdefault(f.backbone, {})[f.method] = grid_per_tile(_read(root / f.path, f.stage), where)
    if not per_backbone:
        return long_table([])
    ev = params.get("evaluate", {})
    if "bootstrap" not in ev or "seed" not in params:
        raise ScanbenchError("params: evaluate.bootstrap and seed are needed for the paired comparisons")
    rows = [r for b, per_method in per_backbone.items()
            for r in grid_paired_rows(per_method, int(ev["bootstrap"]), int(params["seed"]), backbone=b,
                                      family=families[b])]
    return long_table(rows)


def load_results_with_pairs(results_dir: str | Path, params: Mapping[str, Any]) -> pd.DataFrame:
    """`load_results` plus the paired rows (AUC-D and the grid pointing game): what the report stage builds its
    metrics and tables from."""
    parts = [load_results(results_dir, params), load_paired(results_dir, params),
             load_grid_paired(results_dir, params)]
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0] if parts else long_table([])
