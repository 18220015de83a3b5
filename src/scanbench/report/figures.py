"""Figures as PNG (matplotlib, Agg backend, seaborn styling); equal inputs give equal bytes.

- qualitative grids (the paper's Figs. 3-5): rows = one evaluation image per class (the first of each, by label),
  columns = image + each method's map
- SCAN: image | reconstruction | self-confidence map (the same grid)
- perturbation curves, training curves, ablation bars (ours beside the paper), the P sweep (Fig. 6) and,
  where the ablation stage saved example maps, ablation map grids (Figs. 7-9)
- the grid pointing game: the first mosaics, each tile's class explained by every method (maps/grid/)

The plotting functions take plain arrays / DataFrames and a path; `render_figures` feeds them one run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ..config import ABLATION_PARAM, setting_name
from ..errors import ScanbenchError
from ..io import load_npz, save_figure
from .results import CALIBRATION_METHODS, METHOD_LABELS, families_of, grid_methods, setting_number, sort_methods
from .tables import Paper, Table, load_paper

# headless: the pipeline and CI have no display (pyplot picks its backend at the first figure, so this may follow
# the imports)
matplotlib.use("Agg")

DPI = 110
MAP_CMAP = "jet"
# images: (manifest row indices, side in px) -> N x side x side x 3 floats in [0, 1]
ImageLoader = Callable[[Sequence[int], int], np.ndarray]


@dataclass
class Figure:
    path: Path
    caption: str


def _save(fig: Any, path: str | Path, tight: bool = True) -> Path:
    if tight:   # a figure that places its own axes (a colour bar, a title band) passes tight=False
        fig.tight_layout()
    save_figure(path, fig, dpi=DPI, format="png", metadata={"Software": None})  # no version stamp: same bytes
    plt.close(fig)
    return Path(path)


def _grid(n: int, ncols: int, cell: float, title: str) -> tuple[Any, np.ndarray]:
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(n, ncols, figsize=(cell * ncols, cell * n + (0.4 if title else 0)), squeeze=False)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
        ax.grid(False)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig, axes


def plot_map_grid(images: np.ndarray | None, columns: Mapping[str, np.ndarray], path: str | Path,
                  title: str = "", overlay: bool = True, cell: float = 1.6,
                  row_labels: Sequence[str] | None = None) -> Path:
    """Rows = images; the image first (when given), then each entry of `columns` (label -> N x H x W maps in
    [0, 1], drawn in colour and overlaid on the image unless overlay=False; or N x H x W x 3 pictures).
    `row_labels` (one per row) name the rows on the left."""
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        raise ValueError("plot_map_grid needs at least one map column with one image row")
    offset = int(images is not None)
    fig, axes = _grid(n, len(columns) + offset, cell, title)
    for i in range(n):
        if images is not None:
            axes[i, 0].imshow(np.clip(images[i], 0, 1))
        for j, panels in enumerate(columns.values(), start=offset):
            panel = np.asarray(panels[i], dtype=np.float32)
            if panel.ndim == 3:
                axes[i, j].imshow(np.clip(panel, 0, 1))
                continue
            if images is not None and overlay:
                axes[i, j].imshow(np.clip(images[i], 0, 1))
            axes[i, j].imshow(panel, cmap=MAP_CMAP, vmin=0, vmax=1,
                              alpha=0.5 if images is not None and overlay else None)
    for j, label in enumerate((["image"] if images is not None else []) + list(columns)):
        axes[0, j].set_title(label, fontsize=8)
    for i, label in enumerate(row_labels or []):
        axes[i, 0].set_ylabel(label, fontsize=8)
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
    return _save(fig, path, tight=False)


def plot_perturbation_curves(evaluate: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Top-1 accuracy vs the share of pixels removed, positive and negative panels, a line per method.
    evaluate: one backbone's `evaluate` rows of the results table (fair variant used)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    fair = evaluate[evaluate["variant"] == "fair"]
    methods = sort_methods(list(fair["method"].unique()))
    palette = sns.color_palette("tab20", max(len(methods), 1))
    for color, m in zip(palette, methods):
        rows = fair[fair["method"] == m]
        for ax, side in zip(axes, ("pos", "neg")):
            curve = rows[rows["metric"] == f"{side}_curve"]
            auc = rows.loc[rows["metric"] == f"{side}_auc", "value"]
            label = METHOD_LABELS.get(m, m) + (f" ({auc.iat[0]:.1f})" if len(auc) else "")
            ax.plot(curve["x"] * 100, curve["value"], "--" if m in CALIBRATION_METHODS else "-", color=color,
                    marker="o", markersize=3, label=label)
    for ax, name in zip(axes, ("positive (most relevant removed first; lower is better)",
                               "negative (least relevant removed first; higher is better)")):
        ax.set_xlabel("pixels removed (%)")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7, title="method (AUC)", title_fontsize=7)
    axes[0].set_ylabel("top-1 accuracy (%)")
    fig.suptitle(title)
    return _save(fig, path)


def plot_training_curves(curves: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """One panel per column of curves.csv (loss terms, confidence area, ...), a line per layer (`setting`);
    curves: one backbone's `train_scan` curve rows (x = epoch)."""
    sns.set_theme(style="whitegrid", context="paper")
    metrics = list(dict.fromkeys(curves["metric"])) or ["(no curves)"]
    ncol = min(3, len(metrics))
    fig, axes = plt.subplots(math.ceil(len(metrics) / ncol), ncol, figsize=(4 * ncol, 3 * math.ceil(
        len(metrics) / ncol)), squeeze=False)
    for ax, metric in zip(axes.ravel(), metrics):
        for layer, rows in curves[curves["metric"] == metric].groupby("setting"):
            ax.plot(rows["x"], rows["value"], label=layer)
        ax.set_title(metric, fontsize=9)
        ax.set_xlabel("epoch")
    for ax in axes.ravel()[len(metrics):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, title="layer", title_fontsize=7)
    fig.suptitle(title)
    return _save(fig, path)


def plot_ablation_bars(table: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """AUC-D per setting, a panel per backbone: ours, and the paper's paired value as a hollow bar.
    table: an ablation table's DataFrame (backbone, setting, auc_d, paper_auc_d); reference rows are skipped."""
    sns.set_theme(style="whitegrid", context="paper")
    ours = table[table["backbone"] != "paper"]
    backbones = list(dict.fromkeys(ours["backbone"]))
    fig, axes = plt.subplots(1, max(len(backbones), 1), figsize=(4.5 * max(len(backbones), 1), 3.5), squeeze=False)
    for ax, b in zip(axes[0], backbones):
        rows = ours[ours["backbone"] == b]
        x = np.arange(len(rows))
        ys, ps = (pd.to_numeric(rows.get(c, pd.Series(index=rows.index, dtype=float)), errors="coerce")
                  for c in ("auc_d", "paper_auc_d"))
        ax.bar(x - 0.2, ys, width=0.4, label="ours")
        if ps.notna().any():
            ax.bar(x + 0.2, ps, width=0.4, fill=False, hatch="//", edgecolor="0.3", label="paper")
        named = not all(str(s).replace(".", "", 1).lstrip("-").isdigit() for s in rows["setting"])
        ax.set_xticks(x, rows["setting"], rotation=30 if named else 0, fontsize=8)
        ax.set_title(b, fontsize=9)
        ax.set_ylabel("AUC-D (%)")
        ax.axhline(0, color="0.5", lw=0.8)
        top = np.nanmax([*ys, *ps]) if np.isfinite([*ys, *ps]).any() else 1.0
        ax.set_ylim(top=max(top, 0) * 1.3 + 1)  # headroom: the legend must not cover the bars
        ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.suptitle(title)
    return _save(fig, path)


def plot_p_sweep(table: pd.DataFrame, paper_curves: Mapping[str, pd.DataFrame], path: str | Path) -> Path:
    """The paper's Fig. 6 / Table VIII as curves: AUC-D, Neg and Pos AUC vs the inference percentile P.
    table: Table VIII's DataFrame; paper_curves: backbone -> the paper's P sweep for its reference model
    (columns P, model and the three AUCs)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6))
    ours = table[table["backbone"] != "paper"]
    backbones = list(dict.fromkeys(ours["backbone"]))
    for color, b in zip(sns.color_palette("deep", max(len(backbones), 1)), backbones):
        rows = ours[ours["backbone"] == b]
        ref = paper_curves.get(b)
        for ax, key in zip(axes, ("auc_d", "neg_auc", "pos_auc")):
            ax.plot(rows["setting"].map(setting_number), pd.to_numeric(rows[key]), "-o", color=color, label=b,
                    markersize=4)
            if ref is not None and len(ref):
                ax.plot(ref["P"], ref[key], "--", color=color, alpha=0.6, label=f"paper ({ref['model'].iat[0]})")
    _title_panels(axes, ("AUC-D (higher is better)", "Neg AUC (higher is better)", "Pos AUC (lower is better)"),
                  xlabel="gradient-mask percentile P", ylabel="%")
    return _save(fig, path)


def _title_panels(axes, titles, **axis) -> None:
    """One row of metric panels: the same axis settings, a small title each, the legend on the first."""
    for ax, name in zip(axes, titles):
        ax.set(**axis)
        ax.set_title(name, fontsize=9)
    axes[0].legend(fontsize=7)


def plot_scaling(table: pd.DataFrame, path: str | Path) -> Path:
    """Table X as curves: held-out reconstruction skill, confidence area and AUC-D against the decoder's
    training-set size, one line per backbone (AUC-D's intervals are in the table)."""
    sns.set_theme(style="whitegrid", context="paper")
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for color, (b, rows) in zip(sns.color_palette("deep", 8), table.groupby("backbone", sort=True)):
        n = pd.to_numeric(rows["setting"], errors="coerce")
        for ax, key in zip(axes, ("recon_skill", "conf_area", "auc_d")):
            y = pd.to_numeric(rows.get(key), errors="coerce")
            ax.plot(n, y, "-o", color=color, label=b, markersize=4)
    _title_panels(axes, ("held-out reconstruction skill", "held-out confidence area (P = 95)", "AUC-D (%)"),
                  xlabel="decoder training images", xscale="log")
    return _save(fig, path)


SIMILARITY_TITLES = {"spearman": "Spearman rank correlation", "ssim": "SSIM", "hog": "HOG similarity"}


def _cascade_label(share: float) -> str:
    return "head" if share == 0 else "all" if share == 1 else f"+{share:.0%}"


def plot_sanity_similarity(rows: pd.DataFrame, path: str | Path, title: str = "") -> Path:
    """Similarity of the trained model's maps to the randomised model's, one panel per measure, one line per
    method (95% bootstrap band): top row cascading randomisation against the share of blocks randomised below
    the head (1 = every weight), bottom row independent randomisation per group (stem ... head); a dashed line
    in the method's colour: its reference level (another image's map from the trained model).
    rows: one backbone's `sanity_maps` rows of the results table."""
    sns.set_theme(style="whitegrid", context="paper")
    measures = list(SIMILARITY_TITLES)
    fig, axes = plt.subplots(2, len(measures), figsize=(4 * len(measures), 6.4), squeeze=False)
    methods = sort_methods(list(dict.fromkeys(rows["method"])))
    for color, m in zip(sns.color_palette("deep", max(len(methods), 1)), methods):
        mine = rows[rows["method"] == m]
        for r, (mode, xkey) in enumerate((("cascading", "share"), ("independent", "position"))):
            sel = mine[mine["variant"] == mode]
            x = sel[sel["metric"] == xkey].set_index("setting")["value"].sort_values()
            for ax, k in zip(axes[r], measures):
                vals = sel[sel["metric"] == k].set_index("setting").reindex(x.index)
                ax.plot(x.to_numpy(), vals["value"].to_numpy(), "-o", color=color, markersize=4,
                        label=METHOD_LABELS.get(m, m))
                ax.fill_between(x.to_numpy(), vals["ci_lo"].to_numpy(), vals["ci_hi"].to_numpy(), color=color,
                                alpha=0.15, linewidth=0)
            ref = mine[(mine["variant"] == "other_image")].set_index("metric")["value"]
            for ax, k in zip(axes[r], measures):   # the reference level: another image's map, same model
                if k in ref.index:
                    ax.axhline(float(ref[k]), color=color, linestyle="--", linewidth=0.9)
            if len(x):
                labels = list(x.index) if mode == "independent" else [_cascade_label(v) for v in x]
                for ax in axes[r]:
                    ax.set_xticks(x.to_numpy(), labels, rotation=45 if mode == "independent" else 0, fontsize=7)
    for r, xlabel in enumerate(("randomised from the top down (+ share of the blocks)",
                                "the one group randomised")):
        _title_panels(axes[r], [f"{'cascading' if r == 0 else 'independent'}: {SIMILARITY_TITLES[k]}"
                                for k in measures], xlabel=xlabel)
        for ax in axes[r]:
            ax.axhline(0.0, color="grey", linewidth=0.8)
    if title:
        fig.suptitle(title, fontsize=10)
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
        idx, labels, columns = one_per_class({METHOD_LABELS.get(m, m): z for m, z in maps.items()},
                                             METHOD_LABELS.get("scan", "scan"), source=str(paths["scan"]))
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
                                             out_dir / f"scan_reconstruction_{b}.png", f"SCAN on {b}", overlay=False,
                                             cell=1.8),
                               f"SCAN on {b}: image, decoder reconstruction, self-confidence map"))
        mine = results[results["backbone"] == b]
        figs.append(Figure(plot_perturbation_curves(mine[mine["part"] == "evaluate"], out_dir / f"perturbation_{b}.png",
                                                    title=f"{b}: perturbation test (fair resolution)"),
                           f"Perturbation curves on {b} (positive and negative; AUC in the legend)"))
        figs.append(Figure(plot_training_curves(mine[(mine["part"] == "train_scan") & mine["x"].notna()],
                                                out_dir / f"training_{b}.png", title=f"{b}: SCAN decoder training"),
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
        backbones = sorted(ablation.get("backbones", []))
        settings = [setting_name(s) for s in ablation.get(key, [])]
        if not backbones or not settings:
            continue
        table = by_number[number].df
        figs.append(Figure(plot_ablation_bars(table, out_dir / f"ablation_{kind}.png", title=f"ablation: {kind}"),
                           f"Ablation on {kind}: AUC-D per setting, ours vs the paper's reference model"))
        if kind == "p":
            figs.append(Figure(plot_p_sweep(table, {b: _paper_p_sweep(paper, families[b]) for b in backbones},
                                            out_dir / "p_sweep.png"),
                               "P sweep (cf. the paper's Fig. 6 / Table VIII): AUCs vs inference percentile P"))
        for b in backbones:
            saved = {s: Path(results_dir) / "ablation" / kind / b / f"{s}.npz" for s in settings}
            saved = {s: _load_npz(p) for s, p in saved.items() if p.exists()}
            idx, columns = _aligned(saved, n_rows) if saved else ([], {})
            if not idx:
                continue
            side = next(iter(columns.values())).shape[-1]
            title = f"{b}: SCAN maps per {kind} setting" + (f" (cf. the paper's Fig. {fig_no})" if fig_no else "")
            figs.append(Figure(plot_map_grid(load(idx, side), columns, out_dir / f"ablation_{kind}_maps_{b}.png",
                                             title=title), title))
    scaling = by_number.get("X")
    if scaling is not None and len(scaling.df):
        figs.append(Figure(plot_scaling(scaling.df, out_dir / "scaling.png"),
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
