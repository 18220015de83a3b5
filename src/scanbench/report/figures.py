"""Figures as PNG (matplotlib, Agg backend, seaborn styling); equal inputs give equal bytes.

- qualitative grids (the paper's Figs. 3-5): rows = one evaluation image per class (the first of each, by label),
  columns = image + each method's map
- SCAN: image | reconstruction | self-confidence map (the same grid)
- perturbation curves, training curves, ablation bars (ours beside the paper), the P sweep (Fig. 6) and,
  where the ablation stage saved example maps, ablation map grids (Figs. 7-9)
- the grid pointing game: the first mosaics, each tile's class explained by every method (maps/grid/)

Every figure has a title, named axes and complete legends; methods are named by the registry's labels; bars and
curves whose numbers have a 95% interval in the results table (`ci_lo` / `ci_hi`) draw it; map grids have a colour
bar. The plotting functions take plain arrays / DataFrames and a path; `render_figures` feeds them one run.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import NullFormatter

from ..config import ABLATION_PARAM, ablation_backbones, setting_name
from ..errors import ScanbenchError
from ..io import load_npz, save_figure
from .results import CALIBRATION_METHODS, METHOD_LABELS, families_of, grid_methods, setting_number, sort_methods
from .tables import Paper, Table, load_paper

# headless: the pipeline and CI have no display (pyplot picks its backend at the first figure, so this may follow
# the imports)
matplotlib.use("Agg")

DPI = 110
MAP_CMAP = "jet"
MAP_LABEL = "relevance (each map scaled to [0, 1])"
CBAR_WIDTH = 0.9     # inches a map grid gains on the right for its colour bar
TITLE_HEIGHT = 0.5   # inches a figure gains on top for its title
CI = "95% CI"        # the results' intervals (ci_lo / ci_hi): bootstrap 95% intervals
# images: (manifest row indices, side in px) -> N x side x side x 3 floats in [0, 1]
ImageLoader = Callable[[Sequence[int], int], np.ndarray]


@dataclass
class Figure:
    path: Path
    caption: str


def _figure(*args: Any, **kwargs: Any) -> tuple[Any, Any]:
    """plt.subplots under the report's style, with constrained layout: titles, legends and colour bars get their
    own room (a figure title never overlaps the panels' titles)."""
    sns.set_theme(style="whitegrid", context="paper")
    return plt.subplots(*args, layout="constrained", **kwargs)


def _save(fig: Any, path: str | Path) -> Path:
    save_figure(path, fig, dpi=DPI, format="png", metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)
    return Path(path)


def _wrap(title: str, width: float, fontsize: float = 10) -> str:
    """A figure title broken into lines that fit `width` inches at `fontsize` points."""
    return textwrap.fill(title, max(20, int(width * 72 / (0.55 * fontsize)))) if title else title


def _suptitle(fig: Any, title: str) -> None:
    if title:
        fig.suptitle(_wrap(title, fig.get_figwidth()), fontsize=10)


def _label(method: str) -> str:
    """A method's name in every figure: the registry's label (scanbench.explainers)."""
    return METHOD_LABELS.get(method, method)


def _intervals(rows: pd.DataFrame, metric: str, keys: Sequence[str]) -> dict[tuple, tuple[float, float]]:
    """{key values: (ci_lo, ci_hi)} of one metric's main rows (variant "" or "fair") of the results table."""
    sel = rows[(rows["metric"] == metric) & rows["variant"].isin(["", "fair"]) & rows["ci_lo"].notna()]
    return {tuple(str(v) for v in k): (lo, hi) for *k, lo, hi in sel[[*keys, "ci_lo", "ci_hi"]].itertuples(
        index=False)}


def _yerr(values: Sequence[float], cis: Sequence[tuple[float, float] | None]) -> np.ndarray | None:
    """matplotlib's 2 x N asymmetric error bars (0 where a value has no interval); None if none has one."""
    if not any(ci is not None for ci in cis):
        return None
    lo = [v - ci[0] if ci is not None and np.isfinite(v) else 0.0 for v, ci in zip(values, cis)]
    hi = [ci[1] - v if ci is not None and np.isfinite(v) else 0.0 for v, ci in zip(values, cis)]
    return np.clip(np.array([lo, hi], dtype=float), 0, None)


def plot_map_grid(images: np.ndarray | None, columns: Mapping[str, np.ndarray], path: str | Path,
                  title: str = "", overlay: bool = True, cell: float = 1.6,
                  row_labels: Sequence[str] | None = None, map_label: str = MAP_LABEL) -> Path:
    """Rows = images; the image first (when given), then each entry of `columns` (label -> N x H x W maps in
    [0, 1], drawn in colour and overlaid on the image unless overlay=False; or N x H x W x 3 pictures).
    `row_labels` (one per row) name the rows on the left; a colour bar (`map_label`) reads the maps' colours
    (overlaid maps are drawn at 50% opacity over the image)."""
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        raise ValueError("plot_map_grid needs at least one map column with one image row")
    offset = int(images is not None)
    ncols = len(columns) + offset
    has_maps = any(np.asarray(v).ndim == 3 for v in columns.values())
    width = cell * ncols + (CBAR_WIDTH if has_maps else 0)
    title = _wrap(title, width)
    fig, axes = _figure(n, ncols, squeeze=False,
                        figsize=(width, cell * n + (TITLE_HEIGHT * (1 + 0.6 * title.count("\n")) if title else 0)))
    fig.get_layout_engine().set(w_pad=0.03, h_pad=0.06, wspace=0.01, hspace=0.01)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    alpha = 0.5 if images is not None and overlay else None
    for i in range(n):
        if images is not None:
            axes[i, 0].imshow(np.clip(images[i], 0, 1))
        for j, panels in enumerate(columns.values(), start=offset):
            panel = np.asarray(panels[i], dtype=np.float32)
            if panel.ndim == 3:
                axes[i, j].imshow(np.clip(panel, 0, 1))
                continue
            if alpha is not None:
                axes[i, j].imshow(np.clip(images[i], 0, 1))
            axes[i, j].imshow(panel, cmap=MAP_CMAP, vmin=0, vmax=1, alpha=alpha)
    for j, label in enumerate((["image"] if images is not None else []) + list(columns)):
        axes[0, j].set_title(label, fontsize=8)
    for i, label in enumerate(row_labels or []):
        axes[i, 0].set_ylabel(label, fontsize=8)
    if has_maps:
        bar = fig.colorbar(ScalarMappable(Normalize(0, 1), MAP_CMAP), ax=axes, shrink=min(1.0, 0.9 + 0.05 * n),
                           aspect=max(12, 8 * n), fraction=0.04, pad=0.02)
        bar.set_label(map_label, fontsize=7)
        bar.ax.tick_params(labelsize=7)
    _suptitle(fig, title)
    return _save(fig, path)


TILE_NAMES = ("top left", "top right", "bottom left", "bottom right")


def plot_grid_maps(mosaics: np.ndarray | None, columns: Mapping[str, np.ndarray], path: str | Path,
                   title: str = "", class_names: Sequence[Sequence[str]] | None = None, cell: float = 1.25) -> Path:
    """The grid pointing game's maps: a row per mosaic and tile (the tile's class explained on the mosaic), the
    mosaic first (when given; the tile asked for outlined), then each method's map (entries of `columns`: label ->
    n x 4 x S x S in [0, 1]) over it, one colour scale for all with its colour bar. `class_names`: n x 4 names of
    the tiles' classes, for the row labels."""
    from matplotlib.patches import Rectangle

    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        raise ValueError("plot_grid_maps needs at least one map column with one mosaic")
    side = next(iter(columns.values())).shape[-1]
    offset, ncols, nrows = int(mosaics is not None), len(columns) + int(mosaics is not None), 4 * n
    sns.set_theme(style="white", context="paper")
    head, foot, bar = 0.75, 0.1, 0.9   # inches: the title band, the bottom margin, the colour bar's column
    width, height = cell * ncols + bar + 0.9, cell * nrows + head + foot
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False)
    fig.subplots_adjust(left=0.9 / width, right=1 - bar / width, top=1 - head / height, bottom=foot / height,
                        wspace=0.04, hspace=0.04)
    image = None
    for i in range(n):
        for t in range(4):
            r = 4 * i + t
            if mosaics is not None:
                axes[r, 0].imshow(np.clip(mosaics[i], 0, 1))
                h = side // 2
                axes[r, 0].add_patch(Rectangle(((t % 2) * h - 0.5, (t // 2) * h - 0.5), h, h, fill=False,
                                               edgecolor="yellow", linewidth=1.5))
            for j, maps in enumerate(columns.values(), start=offset):
                if mosaics is not None:
                    axes[r, j].imshow(np.clip(mosaics[i], 0, 1))
                image = axes[r, j].imshow(np.asarray(maps[i, t], dtype=np.float32), cmap=MAP_CMAP, vmin=0, vmax=1,
                                          alpha=0.5 if mosaics is not None else None)
            name = class_names[i][t] if class_names is not None else f"tile {t}"
            axes[r, 0].set_ylabel(f"mosaic {i + 1}\n{TILE_NAMES[t]}:\n{name}", fontsize=7)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for j, label in enumerate((["mosaic"] if mosaics is not None else []) + list(columns)):
        axes[0, j].set_title(label, fontsize=8)
    cax = fig.add_axes((1 - (bar - 0.25) / width, 0.3, 0.15 / width, 0.4))
    fig.colorbar(image, cax=cax).set_label("map value (each map scaled to [0, 1])", fontsize=7)
    cax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10, y=1 - 0.25 / height)
    return _save(fig, path)


def plot_perturbation_curves(evaluate: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Top-1 accuracy vs the share of pixels removed, positive and negative panels, a line per method (dashed:
    calibration rows); each method's AUC and its 95% interval in the legend below the panel.
    evaluate: one backbone's `evaluate` rows of the results table (fair variant used)."""
    fig, axes = _figure(1, 2, figsize=(10, 4.6), sharey=True)
    fair = evaluate[evaluate["variant"] == "fair"]
    methods = sort_methods(list(fair["method"].unique()))
    palette = sns.color_palette("tab20", max(len(methods), 1))
    for color, m in zip(palette, methods):
        rows = fair[fair["method"] == m]
        for ax, side in zip(axes, ("pos", "neg")):
            curve = rows[rows["metric"] == f"{side}_curve"]
            auc = rows[rows["metric"] == f"{side}_auc"]
            label = _label(m)
            if len(auc):
                v, lo, hi = auc[["value", "ci_lo", "ci_hi"]].iloc[0]
                label += f": {v:.1f}" + (f" [{lo:.1f}, {hi:.1f}]" if np.isfinite(lo) else "")
            ax.plot(curve["x"] * 100, curve["value"], "--" if m in CALIBRATION_METHODS else "-", color=color,
                    marker="o", markersize=3, label=label)
    for ax, name in zip(axes, ("positive: most relevant pixels removed first (lower is better)",
                               "negative: least relevant pixels removed first (higher is better)")):
        ax.set_xlabel("pixels removed (%)")
        ax.set_title(name, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, title=f"method: AUC [{CI}]", title_fontsize=7, loc="upper center",
                      bbox_to_anchor=(0.5, -0.16), ncol=2, frameon=False)
    axes[0].set_ylabel("top-1 accuracy (%)")
    _suptitle(fig, title)
    return _save(fig, path)


# the training curves' columns (scanbench.scan.loss.scan_loss): panel titles and y labels
CURVE_LABELS = {"loss": ("loss (Eq. 10)", "L_c + L_r"),
                "loss_c": ("confidence term L_c", "L_c"),
                "loss_r": ("reconstruction term L_r", "L_r"),
                "omega": ("area penalty omega", "omega"),
                "conf_area": ("self-confidence area", "mean C (share of the image)"),
                "recon_err": ("reconstruction error", "MSE (pixels in [0, 1])"),
                "recon_err_weighted": ("error inside the confident area", "C-weighted MSE")}


def plot_training_curves(curves: pd.DataFrame, path: str | Path, title: str = "",
                         target_area: float | None = None) -> Path:
    """One panel per column of curves.csv (loss terms, confidence area, ...), a line per layer (`setting`);
    the confidence area's panel has the area the loss aims at (`target_area`, 1 / (1 + alpha)) as a dashed line.
    curves: one backbone's `train_scan` curve rows (x = optimiser step, each point a few steps' mean)."""
    metrics = list(dict.fromkeys(curves["metric"])) or ["(no curves)"]
    ncol = min(3, len(metrics))
    nrow = math.ceil(len(metrics) / ncol)
    fig, axes = _figure(nrow, ncol, figsize=(4 * ncol, 3 * nrow + (TITLE_HEIGHT if title else 0)), squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        for layer, rows in curves[curves["metric"] == metric].groupby("setting"):
            ax.plot(rows["x"], rows["value"], label=f"layer {layer}", linewidth=1)
        if metric == "conf_area" and target_area is not None:
            ax.axhline(target_area, color="0.3", linestyle="--", linewidth=0.9,
                       label=f"target area 1 / (1 + alpha) = {target_area:.2f}")
            ax.legend(fontsize=7)
        name, ylabel = CURVE_LABELS.get(metric, (metric, metric))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("optimiser step")
        ax.set_ylabel(ylabel)
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize=7)
    _suptitle(fig, title)
    return _save(fig, path)


ABLATION_XLABELS = {"alpha": "alpha (target area 1 / (1 + alpha))", "layer": "layer SCAN reads",
                    "p": "inference percentile P", "components": "SCAN variant"}
ABLATION_TITLES = {"alpha": "alpha", "layer": "the SCAN layer", "p": "the inference percentile P",
                   "components": "SCAN's components"}


def plot_ablation_bars(table: pd.DataFrame, path: str | Path, title: str = "",
                       intervals: pd.DataFrame | None = None, xlabel: str = "setting") -> Path:
    """AUC-D per setting, a panel per backbone: ours (with its 95% interval from `intervals`, the ablation's rows
    of the results table), and the paper's paired value as a hollow bar.
    table: an ablation table's DataFrame (backbone, setting, auc_d, paper_auc_d); reference rows are skipped."""
    ours = table[table["backbone"] != "paper"]
    backbones = list(dict.fromkeys(ours["backbone"]))
    cis = _intervals(intervals, "auc_d", ("backbone", "setting")) if intervals is not None else {}
    fig, axes = _figure(1, max(len(backbones), 1), squeeze=False,
                        figsize=(4.5 * max(len(backbones), 1), 3.6 + (TITLE_HEIGHT if title else 0)))
    for ax, b in zip(axes[0], backbones):
        rows = ours[ours["backbone"] == b]
        x = np.arange(len(rows))
        ys, ps = (pd.to_numeric(rows.get(c, pd.Series(index=rows.index, dtype=float)), errors="coerce")
                  for c in ("auc_d", "paper_auc_d"))
        err = _yerr(list(ys), [cis.get((b, str(s))) for s in rows["setting"]])
        ax.bar(x - 0.2, ys, width=0.4, yerr=err, capsize=3, error_kw={"elinewidth": 1},
               label="ours" + (f" ({CI})" if err is not None else ""))
        if ps.notna().any():
            ax.bar(x + 0.2, ps, width=0.4, fill=False, hatch="//", edgecolor="0.3", label="paper")
        named = not all(str(s).replace(".", "", 1).lstrip("-").isdigit() for s in rows["setting"])
        ax.set_xticks(x, rows["setting"], rotation=30 if named else 0, fontsize=8,
                      ha="right" if named else "center", rotation_mode="anchor" if named else "default")
        ax.set_title(b, fontsize=9)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("AUC-D (%)")
        ax.axhline(0, color="0.5", lw=0.8)
        tops = [*(ys + (err[1] if err is not None else 0)), *ps]
        top = np.nanmax(tops) if np.isfinite(tops).any() else 1.0
        ax.set_ylim(top=max(top, 0) * 1.3 + 1)  # headroom: the legend must not cover the bars
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    _suptitle(fig, title)
    return _save(fig, path)


def plot_p_sweep(table: pd.DataFrame, paper_curves: Mapping[str, pd.DataFrame], path: str | Path,
                 intervals: pd.DataFrame | None = None) -> Path:
    """The paper's Fig. 6 / Table VIII as curves: AUC-D, Neg and Pos AUC vs the inference percentile P, ours with
    95% intervals (from `intervals`, the P ablation's rows of the results table, where it has them).
    table: Table VIII's DataFrame; paper_curves: backbone -> the paper's P sweep for its reference model
    (columns P, model and the three AUCs)."""
    fig, axes = _figure(1, 3, figsize=(12, 3.9 + TITLE_HEIGHT))
    ours = table[table["backbone"] != "paper"]
    backbones = list(dict.fromkeys(ours["backbone"]))
    keys = ("auc_d", "neg_auc", "pos_auc")
    cis = {k: _intervals(intervals, k, ("backbone", "setting")) if intervals is not None else {} for k in keys}
    with_ci: set[str] = set()
    for color, b in zip(sns.color_palette("deep", max(len(backbones), 1)), backbones):
        rows = ours[ours["backbone"] == b]
        ref = paper_curves.get(b)
        for ax, key in zip(axes, keys):
            y = pd.to_numeric(rows[key], errors="coerce")
            err = _yerr(list(y), [cis[key].get((b, str(s))) for s in rows["setting"]])
            ax.errorbar(rows["setting"].map(setting_number), y, yerr=err, fmt="-o", color=color, markersize=4,
                        capsize=3, elinewidth=1, label=b)
            with_ci.update([key] if err is not None else [])
            if ref is not None and len(ref):
                ax.plot(ref["P"], ref[key], "--", color=color, alpha=0.6, label=f"paper ({ref['model'].iat[0]})")
    _title_panels(axes, [t + (f"; ours: {CI}" if k in with_ci else "") + ")" for k, t in zip(keys, (
        "AUC-D (higher is better", "Neg AUC (higher is better", "Pos AUC (lower is better"))],
        xlabel="gradient-mask percentile P", ylabel="%")
    _suptitle(fig, f"{_label('scan')} against the inference percentile P (cf. the paper's Fig. 6)")
    return _save(fig, path)


def _title_panels(axes, titles, **axis) -> None:
    """One row of metric panels: the same axis settings, a small title each, the legend on the first."""
    for ax, name in zip(axes, titles):
        ax.set(**axis)
        ax.set_title(name, fontsize=9)
    if axes[0].get_legend_handles_labels()[0]:
        axes[0].legend(fontsize=7)


def plot_scaling(table: pd.DataFrame, path: str | Path, intervals: pd.DataFrame | None = None) -> Path:
    """Table X as curves: held-out reconstruction skill, confidence area and AUC-D against the decoder's
    training-set size, one line per backbone; AUC-D with its 95% interval (from `intervals`, the `scaling` rows
    of the results table)."""
    fig, axes = _figure(1, 3, figsize=(12, 3.6 + TITLE_HEIGHT))
    keys = ("recon_skill", "conf_area", "auc_d")
    cis = {k: _intervals(intervals, k, ("backbone", "setting")) if intervals is not None else {} for k in keys}
    sizes: set[float] = set()
    with_ci: set[str] = set()
    for color, (b, rows) in zip(sns.color_palette("deep", 8), table.groupby("backbone", sort=True)):
        n = pd.to_numeric(rows["setting"], errors="coerce")
        sizes |= set(n.dropna())
        for ax, key in zip(axes, keys):
            y = pd.to_numeric(rows.get(key), errors="coerce")
            err = _yerr(list(y), [cis[key].get((b, str(s))) for s in rows["setting"]])
            ax.errorbar(n, y, yerr=err, fmt="-o", color=color, markersize=4, capsize=3, elinewidth=1, label=b)
            with_ci.update([key] if err is not None else [])
    _title_panels(axes, [t + (f" ({CI})" if k in with_ci else "") for k, t in zip(keys, (
        "held-out reconstruction skill", "held-out confidence area (P = 95)", "AUC-D on the evaluation images"))],
        xlabel="decoder training images", xscale="log")
    for ax, ylabel in zip(axes, ("1 - MSE / the mean image's MSE", "mean confidence C", "AUC-D (%)")):
        ax.set_ylabel(ylabel)
        if sizes:   # the sizes themselves on the log axis, as plain numbers
            ax.set_xticks(sorted(sizes), [f"{v:g}" for v in sorted(sizes)])
            ax.xaxis.set_minor_formatter(NullFormatter())
    _suptitle(fig, f"{_label('scan')} against its decoder's training-set size (Table X)")
    return _save(fig, path)


SIMILARITY_TITLES = {"spearman": "Spearman rank correlation", "ssim": "SSIM", "hog": "HOG similarity"}


def _cascade_label(share: float) -> str:
    return "head" if share == 0 else "all" if share == 1 else f"+{share:.0%}"


def plot_sanity_similarity(rows: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Similarity of the trained model's maps to the randomised model's, one panel per measure, one line per
    method (95% bootstrap band): top row cascading randomisation against the share of blocks randomised below
    the head (1 = every weight), bottom row independent randomisation per group (stem ... head); a dashed line
    in the method's colour: its reference level (another image's map from the trained model). One legend below
    the panels names the methods, the band and both reference lines.
    rows: one backbone's `sanity_maps` rows of the results table."""
    measures = list(SIMILARITY_TITLES)
    fig, axes = _figure(2, len(measures), figsize=(4 * len(measures), 7.2 + (TITLE_HEIGHT if title else 0)),
                        squeeze=False)
    methods = sort_methods(list(dict.fromkeys(rows["method"])))
    handles: list[Any] = []
    has_ref = has_band = False
    for color, m in zip(sns.color_palette("deep", max(len(methods), 1)), methods):
        mine = rows[rows["method"] == m]
        handles.append(Line2D([], [], color=color, marker="o", markersize=4, label=_label(m)))
        for r, (mode, xkey) in enumerate((("cascading", "share"), ("independent", "position"))):
            sel = mine[mine["variant"] == mode]
            x = sel[sel["metric"] == xkey].set_index("setting")["value"].sort_values()
            for ax, k in zip(axes[r], measures):
                vals = sel[sel["metric"] == k].set_index("setting").reindex(x.index)
                ax.plot(x.to_numpy(), vals["value"].to_numpy(), "-o", color=color, markersize=4)
                if vals["ci_lo"].notna().any():
                    has_band = True
                    ax.fill_between(x.to_numpy(), vals["ci_lo"].to_numpy(), vals["ci_hi"].to_numpy(), color=color,
                                    alpha=0.15, linewidth=0)
            ref = mine[(mine["variant"] == "other_image")].set_index("metric")["value"]
            for ax, k in zip(axes[r], measures):   # the reference level: another image's map, same model
                if k in ref.index:
                    has_ref = True
                    ax.axhline(float(ref[k]), color=color, linestyle="--", linewidth=0.9)
            if len(x):
                labels = list(x.index) if mode == "independent" else [_cascade_label(v) for v in x]
                for ax in axes[r]:
                    ax.set_xticks(x.to_numpy(), labels, rotation=45 if mode == "independent" else 0, fontsize=7)
    if has_band:
        handles.append(Patch(color="0.5", alpha=0.3, linewidth=0, label=f"{CI} (bootstrap over images)"))
    if has_ref:
        handles.append(Line2D([], [], color="0.3", linestyle="--", linewidth=0.9,
                              label="reference: another image's map, trained model (in the method's colour)"))
    handles.append(Line2D([], [], color="grey", linewidth=0.8, label="0: no similarity"))
    for r, xlabel in enumerate(("randomised top-down (head + share of the blocks)",
                                "the one group randomised")):
        for ax, k in zip(axes[r], measures):
            ax.set_xlabel(xlabel)
            ax.set_title(f"{'cascading' if r == 0 else 'independent'}: {SIMILARITY_TITLES[k]}", fontsize=9)
            ax.axhline(0.0, color="grey", linewidth=0.8)
        axes[r, 0].set_ylabel("similarity to the trained model's map")
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 3), fontsize=7, frameon=False)
    _suptitle(fig, title)
    return _save(fig, path)


# ---------------------------------------------------------------------------------------------- one run

def _load_npz(path: Path) -> dict[str, np.ndarray]:
    return load_npz(path, stage="explain_*")


def _aligned(maps: Mapping[str, Mapping[str, np.ndarray]], n_rows: int, lead: str | None = None
             ) -> tuple[list[int], dict[str, np.ndarray]]:
    """The first n_rows images (in the order of entry `lead`, else the first) that every entry has, and each
    entry's maps of them (each .npz stores maps + the manifest indices they belong to, in its own order)."""
    shared = set.intersection(*({int(i) for i in z["indices"]} for z in maps.values()))
    idx = [int(i) for i in maps[lead or next(iter(maps))]["indices"] if int(i) in shared][:n_rows]
    columns = {}
    for label, z in maps.items():
        pos = {int(i): k for k, i in enumerate(z["indices"])}
        columns[label] = np.stack([z["maps"][pos[i]].astype(np.float32) for i in idx]) if idx else np.zeros(0)
    return idx, columns


def one_per_class(maps: Mapping[str, Mapping[str, np.ndarray]], lead: str, source: str = ""
                  ) -> tuple[list[int], list[int], dict[str, np.ndarray]]:
    """(manifest rows, their labels, columns): one image per class, ascending label, the first of each class in the
    order of entry `lead` among the images every entry has; columns as `_aligned` gives them."""
    z = maps[lead]
    if "labels" not in z:
        raise ScanbenchError(f"{source or lead} has no `labels`: re-run the explain stage that writes it")
    shared = set.intersection(*({int(i) for i in m["indices"]} for m in maps.values()))
    first: dict[int, int] = {}
    for i, label in zip(z["indices"], z["labels"]):
        if int(i) in shared:
            first.setdefault(int(label), int(i))
    labels = sorted(first)
    idx = [first[c] for c in labels]
    columns = {}
    for name, m in maps.items():
        pos = {int(i): k for k, i in enumerate(m["indices"])}
        columns[name] = np.stack([m["maps"][pos[i]].astype(np.float32) for i in idx]) if idx else np.zeros(0)
    return idx, labels, columns


def render_figures(results: pd.DataFrame, tables: Sequence[Table], params: Mapping[str, Any],
                   maps_dir: str | Path, results_dir: str | Path, out_dir: str | Path,
                   image_loader: ImageLoader | None = None, n_rows: int = 4, paper: Paper | None = None,
                   class_names: Sequence[str] | None = None) -> list[Figure]:
    """Every figure of one run, in README order. Reads maps/<B>/<M>.npz for the methods the params name (a
    missing one is an error) and the ablation stage's example maps <results_dir>/ablation/<kind>/<B>/<s>.npz
    where it saved them. The qualitative grids show one image per class (`class_names[label]` names its row);
    the other map grids the first `n_rows` images."""
    paper = paper or load_paper()
    maps_dir, out_dir, families = Path(maps_dir), Path(out_dir), families_of(params)
    load = (lambda idx, side: image_loader(idx, side)) if image_loader else (lambda idx, side: None)
    figs: list[Figure] = []
    for b in sorted(params.get("backbones", [])):
        methods = ["scan", *params.get("explain", {}).get("baselines", {}).get(families[b], [])]
        paths = {m: maps_dir / b / f"{m}.npz" for m in sort_methods(methods)}
        for m, p in paths.items():
            if not p.exists():
                raise ScanbenchError(f"{p} is missing: run the `explain_{'scan' if m == 'scan' else families[b]}` "
                                     f"stage")
        maps = {m: _load_npz(p) for m, p in paths.items()}
        idx, labels, columns = one_per_class({_label(m): z for m, z in maps.items()}, _label("scan"),
                                             source=str(paths["scan"]))
        side = int(maps["scan"]["maps"].shape[-1])
        names = [class_names[c] if class_names and c < len(class_names) else f"class {c}" for c in labels]
        figs.append(Figure(plot_map_grid(load(idx, side), columns, out_dir / f"qualitative_{b}.png",
                                         title=f"{b}: every method on one evaluation image per class",
                                         row_labels=names),
                           f"Qualitative comparison on {b}, one evaluation image per class (cf. the paper's "
                           f"Figs. 3-5)"))
        scan = maps["scan"]
        if "recon" in scan:
            k = min(len(scan["recon"]), n_rows)
            panels = {"reconstruction": np.transpose(scan["recon"][:k], (0, 2, 3, 1)),   # N x H x W x RGB
                      "self-confidence": scan["maps"][:k]}
            figs.append(Figure(plot_map_grid(load([int(i) for i in scan["indices"][:k]], side), panels,
                                             out_dir / f"scan_reconstruction_{b}.png",
                                             f"{_label('scan')} on {b}: decoder reconstruction and self-confidence",
                                             overlay=False, cell=1.8,
                                             map_label="self-confidence (scaled to [0, 1])"),
                               f"SCAN on {b}: image, decoder reconstruction, self-confidence map"))
        mine = results[results["backbone"] == b]
        figs.append(Figure(plot_perturbation_curves(mine[mine["part"] == "evaluate"], out_dir / f"perturbation_{b}.png",
                                                    title=f"{b}: perturbation test (fair resolution)"),
                           f"Perturbation curves on {b} (positive and negative; AUC and its 95% interval in the "
                           f"legend)"))
        target = mine.loc[(mine["part"] == "train_scan") & (mine["metric"] == "target_area"), "value"]
        figs.append(Figure(plot_training_curves(mine[(mine["part"] == "train_scan") & mine["x"].notna()],
                                                out_dir / f"training_{b}.png", title=f"{b}: SCAN decoder training",
                                                target_area=float(target.iat[0]) if len(target) else None),
                           f"SCAN decoder training curves on {b}, one line per layer"))
        similarity = mine[(mine["part"] == "sanity_maps") & mine["x"].isna()]
        if len(similarity):
            figs.append(Figure(plot_sanity_similarity(similarity, out_dir / f"sanity_similarity_{b}.png",
                                                      title=f"{b}: maps after randomisation vs the trained model's"),
                               f"Sanity checks on {b}: similarity of each method's maps to the trained model's after "
                               f"cascading and independent weight randomisation (near 0 = passes)"))
        if params.get("grid"):
            figs.append(grid_figure(b, families[b], params, maps_dir, out_dir, image_loader, class_names))
    by_number = {t.number: t for t in tables}
    ablation = params.get("ablation", {})
    for (kind, key), number, fig_no in zip(ABLATION_PARAM.items(), ("VI", "VII", "VIII", "IX"), ("7", "8", "9", "")):
        backbones = sorted(ablation_backbones(dict(params), kind))
        settings = [setting_name(s) for s in ablation.get(key, [])]
        if not backbones or not settings:
            continue
        table = by_number[number].df
        rows = results[results["part"] == f"ablation_{kind}"]
        figs.append(Figure(plot_ablation_bars(table, out_dir / f"ablation_{kind}.png",
                                              title=f"Ablation on {ABLATION_TITLES.get(kind, kind)}: AUC-D, ours "
                                                    f"vs the paper's", intervals=rows,
                                              xlabel=ABLATION_XLABELS.get(kind, kind)),
                           f"Ablation on {kind}: AUC-D per setting, ours vs the paper's reference model"))
        if kind == "p":
            figs.append(Figure(plot_p_sweep(table, {b: _paper_p_sweep(paper, families[b]) for b in backbones},
                                            out_dir / "p_sweep.png", intervals=rows),
                               "P sweep (cf. the paper's Fig. 6 / Table VIII): AUCs vs inference percentile P"))
        for b in backbones:
            saved = {s: Path(results_dir) / "ablation" / kind / b / f"{s}.npz" for s in settings}
            saved = {s: _load_npz(p) for s, p in saved.items() if p.exists()}
            idx, columns = _aligned(saved, n_rows) if saved else ([], {})
            if not idx:
                continue
            side = next(iter(columns.values())).shape[-1]
            head = {"p": "P = ", "alpha": "alpha = "}.get(kind, "")
            columns = {f"{head}{s}": maps for s, maps in columns.items()}
            title = (f"{b}: {_label('scan')} maps per setting of {ABLATION_TITLES.get(kind, kind)}"
                     + (f" (cf. the paper's Fig. {fig_no})" if fig_no else ""))
            figs.append(Figure(plot_map_grid(load(idx, side), columns, out_dir / f"ablation_{kind}_maps_{b}.png",
                                             title=title), title))
    scaling = by_number.get("X")
    if scaling is not None and len(scaling.df):
        figs.append(Figure(plot_scaling(scaling.df, out_dir / "scaling.png",
                                        intervals=results[results["part"] == "scaling"]),
                           "SCAN against its decoder's training-set size (Table X): where it heads as data grows"))
    return figs


def grid_figure(backbone: str, family: str, params: Mapping[str, Any], maps_dir: Path, out_dir: Path,
                image_loader: ImageLoader | None, class_names: Sequence[str] | None) -> Figure:
    """The grid pointing game's figure of one backbone from the grid stages' kept maps (maps/grid/<B>/<M>.npz:
    maps n x 4 x S x S, rows and classes n x 4); a missing file is an error naming its stage."""
    zs = {}
    for m in sort_methods(grid_methods(params, family)):
        p = maps_dir / "grid" / backbone / f"{m}.npz"
        if not p.exists():
            raise ScanbenchError(f"{p} is missing: run the `{'grid_scan' if m == 'scan' else f'grid_{family}'}` stage")
        zs[m] = load_npz(p, stage="grid_scan" if m == "scan" else f"grid_{family}")
    first = next(iter(zs.values()))
    rows, classes = first["rows"], first["classes"]
    for m, z in zs.items():
        if not np.array_equal(z["rows"], rows) or z["maps"].shape[:2] != rows.shape:
            raise ScanbenchError(f"{maps_dir / 'grid' / backbone / (m + '.npz')} holds other mosaics than the other "
                                 f"methods' (or maps not n x 4 x S x S): re-run the grid stages")
    side = int(first["maps"].shape[-1])
    mosaics = None
    if image_loader is not None and len(rows):
        tiles = image_loader([int(r) for r in rows.ravel()], side // 2).reshape(len(rows), 4, side // 2, side // 2, 3)
        mosaics = np.concatenate([np.concatenate([tiles[:, 0], tiles[:, 1]], 2),
                                  np.concatenate([tiles[:, 2], tiles[:, 3]], 2)], 1)
    names = [[class_names[c] if class_names and c < len(class_names) else f"class {c}" for c in row]
             for row in classes.tolist()]
    path = plot_grid_maps(mosaics, {METHOD_LABELS.get(m, m): z["maps"] for m, z in zs.items()},
                          out_dir / f"grid_{backbone}.png", class_names=names,
                          title=f"{backbone}: grid pointing game, each tile's class explained on the mosaic")
    return Figure(path, f"Grid pointing game on {backbone}: the first {len(rows)} mosaics, each tile's class "
                        f"(outlined) explained by every method")


def _paper_p_sweep(paper: Paper, family: str) -> pd.DataFrame:
    vals = paper.values
    model = paper.model_for_family.get(family)
    sweep = vals[(vals["table"] == "VIII") & (vals["model"] == model)]
    wide = sweep.pivot(index=["setting", "model"], columns="metric", values="value").reset_index()
    return wide.assign(P=wide["setting"].map(setting_number)).sort_values("P")
