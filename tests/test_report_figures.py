"""Report figures: every figure the results allow is drawn as a non-empty PNG, with the right grid layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scanbench.report import collect_results
from scanbench.report import figures
from scanbench.report.figures import plot_map_grid, render_figures
from scanbench.report.tables import load_paper_values
from test_report_tables import CNN, VIT, make_results_tree

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 40  # the layout does not depend on resolution; low DPI keeps the tests fast on a busy 2-core box


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    monkeypatch.setattr(figures, "DPI", DPI)


def _png_size(path: Path) -> tuple[int, int]:
    assert path.exists(), path
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 500, path
    with Image.open(path) as im:
        im.load()
        return im.size


def _write_maps(maps_dir: Path, backbone: str, methods: list[str], indices: list[int], side: int = 32) -> None:
    rng = np.random.default_rng(0)
    (maps_dir / backbone).mkdir(parents=True, exist_ok=True)
    for k, m in enumerate(methods):
        order = indices if k % 2 == 0 else indices[::-1]  # a method may store its images in another order
        arrays = {"maps": rng.random((len(order), side, side)).astype(np.float16),
                  "indices": np.asarray(order), "labels": np.zeros(len(order), int),
                  "classes": np.zeros(len(order), int), "seconds_per_image": np.float64(0.01)}
        if m == "scan":
            arrays["recon"] = rng.random((min(8, len(order)), 3, side, side)).astype(np.float16)
        np.savez(maps_dir / backbone / f"{m}.npz", **arrays)


def test_render_figures_draws_every_available_figure(tmp_path):
    res_dir = make_results_tree(tmp_path)
    results = collect_results(res_dir)
    # keep it small (fast): one backbone's evaluations, curves and the P ablation
    results.evaluate = {CNN: results.evaluate[CNN]}
    results.curves = {CNN: results.curves[CNN]}
    results.train_scan = {CNN: results.train_scan[CNN]}
    results.targets, results.timing, results.sanity = {}, {}, {}
    results.ablation = {"p": {CNN: results.ablation["p"][CNN]}}
    maps = tmp_path / "maps"
    methods = ["scan", "gradcam", "layercam"]
    indices = [40, 12, 7, 33, 21]
    _write_maps(maps, CNN, methods, indices)
    # example maps saved by the P ablation for two of its three settings
    rng = np.random.default_rng(1)
    for s, idx in (("0", [12, 7, 99]), ("95", [7, 50, 12])):
        np.savez(res_dir / "ablation" / "p" / CNN / f"{s}.npz", maps=rng.random((3, 32, 32)).astype(np.float16),
                 indices=np.asarray(idx))
    requested = []

    def loader(idx, side):
        requested.append((list(idx), side))
        return np.random.default_rng(2).random((len(idx), side, side, 3))

    out = tmp_path / "figures"
    figs = render_figures(results, maps, out, load_paper_values(), loader, n_rows=3, results_dir=res_dir)
    names = sorted(f.path.name for f in figs)
    assert names == sorted([f"qualitative_{CNN}.png", f"scan_reconstruction_{CNN}.png", f"perturbation_{CNN}.png",
                            f"training_{CNN}.png", "ablation_p.png", "p_sweep.png", f"ablation_p_maps_{CNN}.png"])
    for f in figs:
        _png_size(f.path)
        assert f.caption
    # the qualitative grid: 3 rows (the first three evaluation images of SCAN), image + 3 method columns
    w, h = _png_size(out / f"qualitative_{CNN}.png")
    assert w == round(1.6 * 4 * DPI)
    assert requested[0] == ([40, 12, 7], 32)
    # the ablation grid uses the images both settings share, in order: 12 and 7
    assert ([12, 7], 32) in requested
    w, _ = _png_size(out / f"ablation_p_maps_{CNN}.png")
    assert w == round(1.6 * 3 * DPI)  # image + 2 settings


def test_render_figures_without_images_or_results(tmp_path):
    results = collect_results(tmp_path / "nothing")
    assert render_figures(results, tmp_path / "maps", tmp_path / "figs", load_paper_values(), None) == []
    # maps alone (no image loader): drawn without the image column
    _write_maps(tmp_path / "maps", VIT, ["scan", "rollout"], [3, 1], side=16)
    results.evaluate = {VIT: {}}
    figs = render_figures(results, tmp_path / "maps", tmp_path / "figs", load_paper_values(), None)
    assert [f.path.name for f in figs] == [f"qualitative_{VIT}.png", f"scan_reconstruction_{VIT}.png"]
    w, _ = _png_size(tmp_path / "figs" / f"qualitative_{VIT}.png")
    assert w == round(1.6 * 2 * DPI)


def test_map_grid_overlays_the_map_on_the_image(tmp_path):
    """A map of ones over a black image must colour the overlay cell (jet at 1 = dark red), not leave it black."""
    images = np.zeros((1, 16, 16, 3))
    p = plot_map_grid(images, {"ones": np.ones((1, 16, 16))}, tmp_path / "g.png")
    arr = np.asarray(Image.open(p).convert("RGB")).astype(int)
    w = arr.shape[1]
    left, right = arr[:, : w // 2], arr[:, w // 2:]
    assert (left.sum(-1) == 0).sum() > 100           # the black image cell
    red = (right[..., 0] > 60) & (right[..., 1] < 20) & (right[..., 2] < 20)
    assert red.sum() > 100
    with pytest.raises(ValueError):
        plot_map_grid(None, {}, tmp_path / "empty.png")
