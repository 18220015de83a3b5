"""The `report` stage's library: read every result under results/, aggregate the metric JSONs, then
(tables.py) build Tables I-IX beside the paper's numbers, (figures.py) draw the figures and (readme.py)
write reports/README.md. `compare.py` diffs two metric trees for CI.

    results = collect_results("results")
    metrics = build_metrics(results)          # {"explanations": {...}, "sanity": {...}, ...}

Every input is optional: a stage that did not run leaves its part of the report empty, never invented.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ScanbenchError
from ..io import read_json

# The order methods appear in tables and figures: the paper's Table I / II order, random (calibration) last.
METHOD_ORDER = ["raw_attention", "rollout", "LRP", "Part. LRP", "transformer_attribution", "gradcam",
                "xgradcam", "gradcam++", "layercam", "ag_cam", "lime", "rise", "scan", "random"]
METHOD_LABELS = {"raw_attention": "Raw Attention", "rollout": "Rollout",
                 "transformer_attribution": "Explainability", "gradcam": "Grad-CAM", "xgradcam": "XGrad-CAM",
                 "gradcam++": "Grad-CAM++", "layercam": "LayerCAM", "ag_cam": "AG-CAM", "lime": "LIME",
                 "rise": "RISE", "scan": "SCAN", "random": "random"}
# Calibration rows compete for nothing: they are scored against the real methods but never take a win away.
CALIBRATION_METHODS = ("random",)
ABLATION_KINDS = ("alpha", "layer", "p", "components")
EXPLANATION_KEYS = ("pos_auc", "neg_auc", "auc_d", "drop", "inc", "win")
AUC_KEYS = ("pos_auc", "neg_auc", "auc_d")


def method_sort_key(method: str) -> tuple[int, str]:
    if method in METHOD_ORDER:
        return METHOD_ORDER.index(method), method
    return METHOD_ORDER.index("random") - 0.5, method  # unknown methods go just before the calibration row


def sort_methods(methods: Sequence[str]) -> list[str]:
    return sorted(methods, key=method_sort_key)


@dataclass
class Results:
    """Everything the earlier stages wrote under results/ (each part empty when its stage did not run)."""

    targets: dict[str, dict] = field(default_factory=dict)                     # B -> targets/B.json
    train_scan: dict[str, dict[str, dict]] = field(default_factory=dict)       # B -> L -> summary.json
    curves: dict[str, dict[str, list[dict]]] = field(default_factory=dict)     # B -> L -> curves.csv rows
    evaluate: dict[str, dict[str, dict]] = field(default_factory=dict)         # B -> M -> evaluate/B/M.json
    sanity: dict[str, dict] = field(default_factory=dict)                      # B -> sanity/B.json
    timing: dict[str, dict] = field(default_factory=dict)                      # B -> timing/B.json
    ablation: dict[str, dict[str, dict[str, dict]]] = field(default_factory=dict)  # kind -> B -> setting -> json
    diagnostics: dict[str, dict] = field(default_factory=dict)                 # B -> diagnostics/B.json
    stage_times: dict[str, float] = field(default_factory=dict)

    def backbones(self) -> list[str]:
        names: set[str] = set()
        for part in (self.targets, self.train_scan, self.evaluate, self.sanity, self.timing):
            names.update(part)
        for per_kind in self.ablation.values():
            names.update(per_kind)
        return sorted(names)

    def family(self, backbone: str) -> str | None:
        """cnn | vit, from the stage outputs, else the backbone registry, else None."""
        for result in self.evaluate.get(backbone, {}).values():
            if result.get("family"):
                return result["family"]
        if self.targets.get(backbone, {}).get("family"):
            return self.targets[backbone]["family"]
        try:
            from ..backbones import get_backbone

            return get_backbone(backbone).family
        except ScanbenchError:
            return None


def _read_csv_rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        rows = []
        for row in csv.DictReader(fh):
            rows.append({k: _maybe_float(v) for k, v in row.items()})
        return rows


def _maybe_float(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _read(path: Path) -> Any:
    try:
        return read_json(path)
    except ValueError as err:  # a truncated or hand-edited file: name it
        raise ScanbenchError(f"{path} is not valid JSON ({err}); re-run the stage that writes it") from err


def collect_results(results_dir: str | Path = "results", stage_times: str | Path | None = None) -> Results:
    """Read results/ (see the file layout in docs); missing folders leave their part empty."""
    root = Path(results_dir)
    res = Results()
    for p in sorted((root / "targets").glob("*.json")):
        res.targets[p.stem] = _read(p)
    for p in sorted((root / "train_scan").glob("*/*/summary.json")):
        backbone, layer = p.parent.parent.name, p.parent.name
        res.train_scan.setdefault(backbone, {})[layer] = _read(p)
        if (p.parent / "curves.csv").exists():
            res.curves.setdefault(backbone, {})[layer] = _read_csv_rows(p.parent / "curves.csv")
    for p in sorted((root / "evaluate").glob("*/*.json")):
        data = _read(p)
        res.evaluate.setdefault(p.parent.name, {})[data.get("method", p.stem)] = data
    for p in sorted((root / "sanity").glob("*.json")):
        res.sanity[p.stem] = _read(p)
    for p in sorted((root / "timing").glob("*.json")):
        res.timing[p.stem] = _read(p)
    for p in sorted((root / "diagnostics").glob("*.json")):
        res.diagnostics[p.stem] = _read(p)
    for p in sorted((root / "ablation").glob("*/*/*.json")):
        kind, backbone = p.parent.parent.name, p.parent.name
        data = _read(p)
        setting = str(data.get("setting", p.stem))
        res.ablation.setdefault(kind, {}).setdefault(backbone, {})[setting] = data
    # Wall times are logged beside the results, not in them (they differ run to run; see pipeline/_common.py).
    times = Path(stage_times) if stage_times else root / "stage_times.json"
    if times.exists():
        res.stage_times = {str(k): float(v) for k, v in _read(times).items()}
    return res


def setting_name(value: Any) -> str:
    """A params list entry as the ablation stage names its output (95 and 95.0 -> "95", as DVC renders it)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


# diagnostics/B.json key -> scan_training.json key (held-out unless named train_)
DIAGNOSTIC_KEYS = {"recon_err": "val_recon_err", "mean_image_err": "val_mean_image_err",
                   "recon_skill": "val_recon_skill", "conf_image_std": "val_conf_image_std",
                   "train_conf_area": "train_confidence_area", "train_recon_err": "train_recon_err"}

ABLATION_PARAM = {"alpha": "alphas", "layer": "layers", "p": "percentiles", "components": "components"}


def restrict_to_params(res: Results, params: Mapping[str, Any]) -> Results:
    """Keep only what the current params declare.

    results/ may hold files of another profile (committed JSONs of the default run sit beside the smoke run's):
    the report shows the backbones, methods and ablation settings that params.yaml lists, nothing stale.
    """
    backbones = params.get("backbones")
    if backbones is None:
        return res
    keep = set(backbones)
    baselines = params.get("explain", {}).get("baselines", {})

    def methods_of(backbone: str) -> set[str] | None:
        family = res.family(backbone)
        return None if family not in baselines else {"scan", *baselines[family]}

    for part in ("targets", "sanity", "timing", "diagnostics"):           # B -> json
        setattr(res, part, {b: v for b, v in getattr(res, part).items() if b in keep})
    layers = {setting_name(x) for x in params.get("scan", {}).get("layers", [])}
    for part in ("train_scan", "curves"):                                   # B -> layer -> ...
        setattr(res, part, {b: {lay: v for lay, v in per.items() if not layers or lay in layers}
                            for b, per in getattr(res, part).items() if b in keep})
    allowed = {b: methods_of(b) for b in res.evaluate if b in keep}
    res.evaluate = {b: {m: v for m, v in res.evaluate[b].items() if allowed[b] is None or m in allowed[b]}
                    for b in allowed}
    ablation_params = params.get("ablation", {})
    ablated = keep & set(ablation_params.get("backbones", keep))
    for kind, per_kind in list(res.ablation.items()):
        listed = ablation_params.get(ABLATION_PARAM.get(kind, kind))
        settings = None if listed is None else {setting_name(x) for x in listed}
        res.ablation[kind] = {b: {s: v for s, v in per.items() if settings is None or s in settings}
                              for b, per in per_kind.items() if b in ablated}
    return res


def _num(v: Any, ndigits: int = 4) -> float | None:
    """A JSON number rounded for the metric files; None / NaN stay None (never a made-up number)."""
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else round(v, ndigits)


def win_rates(per_image_drop: Mapping[str, Sequence[float]],
              calibration: Sequence[str] = CALIBRATION_METHODS, atol: float = 1e-9) -> dict[str, float]:
    """Win%: the share of images (percent) on which a method's Drop% is the lowest among the methods compared.

    Ties count as a win for each tied method. Calibration methods (the random map) are not competitors:
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


def explanation_metrics(results: Results) -> dict[str, Any]:
    """explanations.json: {B: {family, n_images, methods: {M: {pos_auc, neg_auc, auc_d, drop, inc, win}}}}."""
    out: dict[str, Any] = {}
    for backbone in sorted(results.evaluate):
        evals = results.evaluate[backbone]
        drops = {m: e["per_image"]["drop"] for m, e in evals.items()
                 if e.get("per_image", {}).get("drop") is not None}
        wins = win_rates(drops)
        methods = {}
        for m in sort_methods(list(evals)):
            fair = evals[m].get("variants", {}).get("fair", {})
            methods[m] = {"pos_auc": _num(fair.get("pos_auc")), "neg_auc": _num(fair.get("neg_auc")),
                          "auc_d": _num(fair.get("auc_d")), "drop": _num(evals[m].get("drop")),
                          "inc": _num(evals[m].get("inc")), "win": _num(wins.get(m))}
        n_images = sorted({int(e["n_images"]) for e in evals.values() if e.get("n_images") is not None})
        out[backbone] = {"family": results.family(backbone),
                         "n_images": n_images[-1] if n_images else None, "methods": methods}
    return out


def sanity_metrics(results: Results) -> dict[str, Any]:
    """sanity.json: {B: {M: {original, random_weights, random_label}}} (AUC-D, percent)."""
    out: dict[str, Any] = {}
    for backbone, per_method in sorted(results.sanity.items()):
        out[backbone] = {m: {s: _num((per_method[m].get(s) or {}).get("auc_d"))
                             for s in ("original", "random_weights", "random_label")}
                         for m in sort_methods(list(per_method))}
    return out


def timing_metrics(results: Results) -> dict[str, Any]:
    """timing.json: {B: {M: {ms_per_image, ratio_to_gradcam}}}."""
    out: dict[str, Any] = {}
    for backbone, data in sorted(results.timing.items()):
        methods = data.get("methods", {})
        out[backbone] = {m: {"ms_per_image": _num(methods[m].get("ms_per_image")),
                             "ratio_to_gradcam": _num(methods[m].get("ratio_to_gradcam"))}
                         for m in sort_methods(list(methods))}
    return out


def scan_training_metrics(results: Results, default_alpha: float | None = None) -> list[dict[str, Any]]:
    """scan_training.json: one record per trained main decoder (results/train_scan/B/L/summary.json)."""
    out = []
    for backbone in sorted(results.train_scan):
        for layer, s in sorted(results.train_scan[backbone].items()):
            rec = {"backbone": backbone, "alpha": _num(s.get("alpha", default_alpha)), "layer": layer,
                   "final_loss": _num(s.get("final_loss"), 6),
                   "val_confidence_area": _num(s.get("val_confidence_area")),
                   "target_area": _num(s.get("target_area"))}
            diag = results.diagnostics.get(backbone, {})
            if diag.get("layer", "default") == layer:   # held-out generalisation (scanbench.diagnostics)
                rec.update({name: _num(diag.get(k)) for k, name in DIAGNOSTIC_KEYS.items() if k in diag})
            out.append(rec)
    return out


def target_metrics(results: Results) -> dict[str, Any]:
    """targets.json: {B: {family, val_top1, n_val}}."""
    return {b: {"family": t.get("family") or results.family(b), "val_top1": _num(t.get("val_top1")),
                "n_val": t.get("n_val")} for b, t in sorted(results.targets.items())}


def ablation_metrics(results: Results, kind: str) -> dict[str, Any]:
    """ablation_<kind>.json: {B: {setting: {pos_auc, neg_auc, auc_d}}}."""
    from .tables import setting_sort_key

    out: dict[str, Any] = {}
    for backbone, per_setting in sorted(results.ablation.get(kind, {}).items()):
        out[backbone] = {s: {k: _num(per_setting[s].get(k)) for k in AUC_KEYS}
                         for s in sorted(per_setting, key=lambda s: setting_sort_key(kind, s))}
    return out


def calibration_metrics(results: Results) -> dict[str, Any]:
    """calibration.json: {B: {pos_auc, neg_auc, auc_d}} from the random method's calibration maps."""
    out: dict[str, Any] = {}
    for backbone, evals in sorted(results.evaluate.items()):
        cal = (evals.get("random") or {}).get("calibration")
        if cal:
            out[backbone] = {k: _num(cal.get(k)) for k in AUC_KEYS}
    return out


def build_metrics(results: Results, default_alpha: float | None = None) -> dict[str, Any]:
    """All metric files, by file stem (reports/metrics/<stem>.json)."""
    metrics: dict[str, Any] = {
        "explanations": explanation_metrics(results),
        "sanity": sanity_metrics(results),
        "timing": timing_metrics(results),
        "scan_training": scan_training_metrics(results, default_alpha),
        "targets": target_metrics(results),
        "calibration": calibration_metrics(results),
    }
    for kind in ABLATION_KINDS:
        metrics[f"ablation_{kind}"] = ablation_metrics(results, kind)
    return metrics


def write_metrics(metrics: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    from ..io import write_json

    paths = []
    for stem, obj in metrics.items():
        path = Path(out_dir) / f"{stem}.json"
        write_json(path, obj)
        paths.append(path)
    return paths
