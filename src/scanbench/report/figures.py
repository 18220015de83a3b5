"""Figures as PNG (matplotlib, Agg backend, seaborn styling).

- qualitative grids (the paper's Figs. 3-5): rows = evaluation images, columns = image + each method's map
- SCAN: image | reconstruction | self-confidence map
- perturbation curves (positive and negative, per method), training curves, the P sweep (Fig. 6),
  ablation bars and, where the ablation stage saved example maps, ablation grids (Figs. 7-9)

Each plotting function takes plain arrays / dicts and a path, so tests can call it without a pipeline.
`render_figures` walks a `Results` bundle and the maps/ folder and returns what it drew (path + caption).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # headless: the pipeline and CI have no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402

from ..io import save_figure  # noqa: E402
from . import METHOD_LABELS, Results, sort_methods  # noqa: E402
from .tables import PaperValues, setting_number, setting_sort_key  # noqa: E402

DPI = 110
MAP_CMAP = "jet"
# images: (manifest row indices, side in px) -> N x side x side x 3 floats in [0, 1], or None if unavailable
ImageLoader = Callable[[Sequence[int], int], "np.ndarray | None"]


@dataclass
class Figure:
    path: Path
    caption: str


def _style() -> None:
    sns.set_theme(style="whitegrid", context="paper")


def _label(method: str) -> str:
    return METHOD_LABELS.get(method, method)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fig.tight_layout()
    save_figure(path, fig, dpi=DPI, format="png")
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------- map grids

def plot_map_grid(images: np.ndarray | None, columns: Mapping[str, np.ndarray], path: str | Path,
                  title: str = "", row_labels: Sequence[str] | None = None, overlay_alpha: float = 0.5) -> Path:
    """Rows = images; first column the image, then one map overlay per entry of `columns`.

    images: N x H x W x 3 in [0, 1] (or None: maps drawn alone); columns: label -> N x H x W maps in [0, 1].
    """
    _style()
    labels = list(columns)
    n = len(next(iter(columns.values()))) if columns else (0 if images is None else len(images))
    if n == 0:
        raise ValueError("plot_map_grid needs at least one image row")
    ncols = len(labels) + (images is not None)
    fig, axes = plt.subplots(n, ncols, figsize=(1.6 * ncols, 1.6 * n + (0.4 if title else 0)), squeeze=False)
    for i in range(n):
        c0 = 0
        if images is not None:
            axes[i, 0].imshow(np.clip(images[i], 0, 1))
            if i == 0:
                axes[i, 0].set_title("image", fontsize=8)
            c0 = 1
        for j, lab in enumerate(labels):
            ax = axes[i, c0 + j]
            m = np.asarray(columns[lab][i], dtype=np.float32)
            if images is not None:
                ax.imshow(np.clip(images[i], 0, 1))
                ax.imshow(m, cmap=MAP_CMAP, vmin=0, vmax=1, alpha=overlay_alpha)
            else:
                ax.imshow(m, cmap=MAP_CMAP, vmin=0, vmax=1)
            if i == 0:
                ax.set_title(lab, fontsize=8)
        if row_labels is not None:
            axes[i, 0].set_ylabel(row_labels[i], fontsize=7)
    return _finish_grid(fig, axes, path, title)


def _finish_grid(fig, axes, path: str | Path, title: str = "") -> Path:
    """Image grids: no ticks or grid lines, an optional title, saved atomically."""
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_scan_reconstruction(images: np.ndarray | None, recon: np.ndarray, confidence: np.ndarray,
                             path: str | Path, title: str = "") -> Path:
    """Per row: image | SCAN reconstruction | self-confidence map. recon: N x 3 x H x W in [0, 1]."""
    _style()
    n = len(recon)
    cols = ["image", "reconstruction", "self-confidence"] if images is not None else ["reconstruction",
                                                                                       "self-confidence"]
    fig, axes = plt.subplots(n, len(cols), figsize=(1.8 * len(cols), 1.8 * n + 0.4), squeeze=False)
    for i in range(n):
        panels = ([np.clip(images[i], 0, 1)] if images is not None else []) + [
            np.clip(np.transpose(np.asarray(recon[i], dtype=np.float32), (1, 2, 0)), 0, 1),
            np.asarray(confidence[i], dtype=np.float32)]
        for j, (ax, img) in enumerate(zip(axes[i], panels)):
            if img.ndim == 2:
                ax.imshow(img, cmap=MAP_CMAP, vmin=0, vmax=1)
            else:
                ax.imshow(img)
            if i == 0:
                ax.set_title(cols[j], fontsize=8)
    return _finish_grid(fig, axes, path, title)


# ---------------------------------------------------------------------------------------------- curves

def plot_perturbation_curves(evals: Mapping[str, Mapping[str, Any]], path: str | Path, title: str = "",
                             variant: str = "fair") -> Path:
    """Top-1 accuracy vs fraction of pixels removed: positive (most relevant first) and negative panels."""
    _style()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    palette = sns.color_palette("tab20", max(len(evals), 1))
    for k, m in enumerate(sort_methods(list(evals))):
        e = evals[m]
        v = e.get("variants", {}).get(variant)
        if not v:
            continue
        x = np.asarray(e["fractions"], dtype=float) * 100
        style = "--" if m == "random" else "-"
        for ax, key in zip(axes, ("pos_curve", "neg_curve")):
            auc = v.get(key.replace("curve", "auc"))
            ax.plot(x, v[key], style, color=palette[k], marker="o", markersize=3,
                    label=f"{_label(m)} ({auc:.1f})" if auc is not None else _label(m))
    for ax, name in zip(axes, ("positive (most relevant removed first; lower is better)",
                               "negative (least relevant removed first; higher is better)")):
        ax.set_xlabel("pixels removed (%)")
        ax.set_title(name, fontsize=9)
    axes[0].set_ylabel("top-1 accuracy (%)")
    axes[0].legend(fontsize=7, title="method (AUC)", title_fontsize=7)
    axes[1].legend(fontsize=7, title="method (AUC)", title_fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_training_curves(curves: Mapping[str, Sequence[Mapping[str, Any]]], path: str | Path,
                         title: str = "") -> Path:
    """One panel per numeric column of curves.csv (loss terms, confidence area, ...), a line per layer.

    The x axis is the `step` column (else `epoch`, else the row number).
    """
    _style()
    cols: list[str] = []
    for rows in curves.values():
        for r in rows:
            for k, v in r.items():
                if k not in cols and k not in ("step", "epoch") and isinstance(v, float):
                    cols.append(k)
    cols = cols or ["(no numeric columns)"]
    ncol = min(3, len(cols))
    nrow = math.ceil(len(cols) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
    for layer, rows in curves.items():
        if not rows:
            continue
        xkey = "step" if "step" in rows[0] else ("epoch" if "epoch" in rows[0] else None)
        x = [r[xkey] for r in rows] if xkey else list(range(len(rows)))
        for ax, c in zip(axes.ravel(), cols):
            y = [r.get(c) if isinstance(r.get(c), float) else np.nan for r in rows]
            ax.plot(x, y, label=layer)
            ax.set_title(c, fontsize=9)
            ax.set_xlabel(xkey or "row")
    for ax in axes.ravel()[len(cols):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, title="layer", title_fontsize=7)
    if title:
        fig.suptitle(title)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- ablations

def _ordered(kind: str, settings: Sequence[str]) -> list[str]:
    return sorted(settings, key=lambda s: setting_sort_key(kind, s))


def plot_ablation_bars(kind: str, ours: Mapping[str, Mapping[str, Mapping[str, Any]]],
                       paper: Mapping[str, Mapping[str, Mapping[str, Any]]], path: str | Path,
                       title: str = "") -> Path:
    """AUC-D per setting, one panel per backbone; the paper's value (its reference model) as a hollow bar.

    ours: B -> setting -> {auc_d, ...}; paper: B -> setting -> paper record (or nothing).
    """
    _style()
    backbones = sorted(ours)
    fig, axes = plt.subplots(1, max(len(backbones), 1), figsize=(4.5 * max(len(backbones), 1), 3.5),
                             squeeze=False)
    for ax, b in zip(axes[0], backbones):
        settings = _ordered(kind, list(ours[b]))
        x = np.arange(len(settings))
        ys = [ours[b][s].get("auc_d") for s in settings]
        ax.bar(x - 0.2, [np.nan if y is None else y for y in ys], width=0.4, label="ours")
        ps = [(paper.get(b, {}).get(s) or {}).get("auc_d") for s in settings]
        if any(p is not None for p in ps):
            ax.bar(x + 0.2, [np.nan if p is None else p for p in ps], width=0.4, fill=False, hatch="//",
                   edgecolor="0.3", label="paper")
        ax.set_xticks(x, settings, rotation=30 if kind in ("layer", "components") else 0, fontsize=8)
        ax.set_title(b, fontsize=9)
        ax.set_ylabel("AUC-D (%)")
        ax.axhline(0, color="0.5", lw=0.8)
        top = np.nanmax([v for v in ys + ps if v is not None] or [1.0])
        ax.set_ylim(top=max(top, 0) * 1.3 + 1)  # headroom so the legend does not cover the bars
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    if not backbones:
        axes[0, 0].text(0.5, 0.5, "no results", ha="center", va="center")
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_p_sweep(ours: Mapping[str, Mapping[str, Mapping[str, Any]]],
                 paper: Mapping[str, Sequence[tuple[float, Mapping[str, Any]]]], path: str | Path) -> Path:
    """The paper's Fig. 6 / Table VIII as curves: AUC-D, Neg and Pos AUC vs inference percentile P.

    ours: B -> setting -> {pos_auc, neg_auc, auc_d}; paper: B -> [(P, record)] for its reference model.
    """
    _style()
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    palette = sns.color_palette("deep", max(len(ours), 1))
    for k, b in enumerate(sorted(ours)):
        pts = sorted((setting_number(s), v) for s, v in ours[b].items() if setting_number(s) is not None)
        for ax, key in zip(axes, ("auc_d", "neg_auc", "pos_auc")):
            ax.plot([p for p, _ in pts], [np.nan if v.get(key) is None else v[key] for _, v in pts], "-o",
                    color=palette[k], label=b, markersize=4)
            ref = paper.get(b) or []
            if ref:
                ax.plot([p for p, _ in ref], [r.get(key) for _, r in ref], "--", color=palette[k], alpha=0.6,
                        label=f"paper ({ref[0][1].get('model')})")
    for ax, name in zip(axes, ("AUC-D (higher is better)", "Neg AUC (higher is better)",
                               "Pos AUC (lower is better)")):
        ax.set_xlabel("gradient-mask percentile P")
        ax.set_title(name, fontsize=9)
        ax.set_ylabel("%")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- pipeline

def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _images(loader: ImageLoader | None, indices: Sequence[int], size: int) -> np.ndarray | None:
    if loader is None:
        return None
    return loader([int(i) for i in indices], size)


def _paper_by_setting(kind: str, results: Results, paper: PaperValues, backbone: str,
                      alpha: float) -> dict[str, dict]:
    """Our setting -> the paper record it pairs with (same rule as the tables)."""
    family = results.family(backbone)
    model = paper.model_for_family.get(family or "")
    table = {"alpha": "VI", "layer": "VII", "p": "VIII", "components": "IX"}[kind]
    out = {}
    for s, data in results.ablation.get(kind, {}).get(backbone, {}).items():
        if kind in ("alpha", "p"):
            rec = paper.lookup(table, model, "scan", setting=setting_number(s))
        elif kind == "layer":
            role = paper.layer_roles.get(family or "", {}).get(s)
            a = data.get("alpha") if data.get("alpha") is not None else alpha
            rec = paper.lookup(table, model, "scan", setting=role, alpha=a) if role else None
        else:
            comp = paper.component_aliases.get(s)
            rec = paper.lookup(table, model, "scan", setting=comp) if comp else None
        if rec is not None:
            out[s] = rec
    return out


def render_figures(results: Results, maps_dir: str | Path, out_dir: str | Path, paper: PaperValues,
                   image_loader: ImageLoader | None = None, n_rows: int = 4, alpha: float = 4,
                   results_dir: str | Path = "results") -> list[Figure]:
    """Draw every figure the available results allow; returns them in README order.

    Example maps of the ablations are read from <results_dir>/ablation/<kind>/<B>/<setting>.npz.
    """
    maps_dir, out_dir = Path(maps_dir), Path(out_dir)
    figs: list[Figure] = []
    for b in results.backbones():
        # qualitative grid (Figs. 3-5): the first n_rows evaluation images, every method
        method_maps = {p.stem: _load_npz(p) for p in sorted((maps_dir / b).glob("*.npz"))}
        method_maps = {m: z for m, z in method_maps.items() if z is not None and "maps" in z}
        if method_maps:
            first = method_maps.get("scan") or next(iter(method_maps.values()))
            rows_idx = [int(i) for i in first["indices"][:n_rows]]
            side = int(first["maps"].shape[-1])
            columns = {}
            for m in sort_methods(list(method_maps)):
                z = method_maps[m]
                pos = {int(i): k for k, i in enumerate(z["indices"])}
                if all(i in pos for i in rows_idx):
                    columns[_label(m)] = np.stack([z["maps"][pos[i]].astype(np.float32) for i in rows_idx])
            images = _images(image_loader, rows_idx, side)
            figs.append(Figure(plot_map_grid(images, columns, out_dir / f"qualitative_{b}.png",
                                             title=f"{b}: every method on the same evaluation images"),
                               f"Qualitative comparison on {b} (cf. the paper's Figs. 3-5)"))
            scan = method_maps.get("scan")
            if scan is not None and "recon" in scan:
                k = min(len(scan["recon"]), n_rows)
                idx = [int(i) for i in scan["indices"][:k]]
                figs.append(Figure(plot_scan_reconstruction(
                    _images(image_loader, idx, side), scan["recon"][:k], scan["maps"][:k],
                    out_dir / f"scan_reconstruction_{b}.png", title=f"SCAN on {b}"),
                    f"SCAN on {b}: image, decoder reconstruction, self-confidence map"))
        if results.evaluate.get(b):
            figs.append(Figure(plot_perturbation_curves(results.evaluate[b], out_dir / f"perturbation_{b}.png",
                                                        title=f"{b}: perturbation test (fair resolution)"),
                               f"Perturbation curves on {b} (positive and negative; AUC in the legend)"))
        if results.curves.get(b):
            figs.append(Figure(plot_training_curves(results.curves[b], out_dir / f"training_{b}.png",
                                                    title=f"{b}: SCAN decoder training"),
                               f"SCAN decoder training curves on {b}, one line per layer"))
    # ablations: bars per kind, the P sweep, and example-map grids where the stage saved maps
    for kind, fig_no in (("alpha", "7"), ("layer", "8"), ("p", "9"), ("components", "")):
        per_kind = results.ablation.get(kind, {})
        if not per_kind:
            continue
        ours = {b: per_kind[b] for b in per_kind}
        paper_recs = {b: _paper_by_setting(kind, results, paper, b, alpha) for b in per_kind}
        figs.append(Figure(plot_ablation_bars(kind, ours, paper_recs, out_dir / f"ablation_{kind}.png",
                                              title=f"ablation: {kind}"),
                           f"Ablation on {kind}: AUC-D per setting, ours vs the paper's reference model"))
        if kind == "p":
            ref = {b: sorted((setting_number(r["setting"]), r) for r in _paper_p_records(paper, results, b))
                   for b in per_kind}
            figs.append(Figure(plot_p_sweep(ours, ref, out_dir / "p_sweep.png"),
                               "P sweep (cf. the paper's Fig. 6 / Table VIII): AUCs vs inference percentile P"))
        for b in sorted(per_kind):
            grid = _ablation_map_grid(kind, b, Path(results_dir) / "ablation", per_kind[b])
            if grid is None:
                continue
            idx, columns = grid
            side = next(iter(columns.values())).shape[-1]
            title = f"{b}: SCAN maps per {kind} setting" + (f" (cf. the paper's Fig. {fig_no})" if fig_no else "")
            figs.append(Figure(plot_map_grid(_images(image_loader, idx, side), columns,
                                             out_dir / f"ablation_{kind}_maps_{b}.png", title=title), title))
    return figs


def _paper_p_records(paper: PaperValues, results: Results, backbone: str) -> list[dict]:
    model = paper.model_for_family.get(results.family(backbone) or "")
    df = paper.table("VIII")
    return df[df["model"] == model].to_dict("records")


def _ablation_map_grid(kind: str, backbone: str, ablation_dir: Path, settings: Mapping[str, Any],
                       n_rows: int = 4) -> tuple[list[int], dict[str, np.ndarray]] | None:
    """Example maps saved by the ablation stage (<setting>.npz with maps + indices), aligned on shared images."""
    loaded = {}
    for s in _ordered(kind, list(settings)):
        z = _load_npz(ablation_dir / kind / backbone / f"{s}.npz")
        if z is not None and "maps" in z and "indices" in z:
            loaded[s] = z
    if not loaded:
        return None
    common = [int(i) for i in next(iter(loaded.values()))["indices"]]
    for z in loaded.values():
        have = {int(i) for i in z["indices"]}
        common = [i for i in common if i in have]
    idx = common[:n_rows]
    if not idx:
        return None
    columns = {}
    for s, z in loaded.items():
        pos = {int(i): k for k, i in enumerate(z["indices"])}
        columns[s] = np.stack([z["maps"][pos[i]].astype(np.float32) for i in idx])
    return idx, columns
