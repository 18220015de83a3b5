"""Report figures: every figure of a run is drawn as a PNG with the right grid layout, the same bytes for the same
inputs, and a map the params name but the folder lacks is an error."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scanbench.errors import ScanbenchError
from scanbench.report import figures
from scanbench.report.figures import plot_map_grid, render_figures
from scanbench.report.results import METHOD_LABELS, load_results
from scanbench.report.tables import build_tables
from test_report_tables import CNN, PARAMS, make_results_tree

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
DPI = 40  # the layout does not depend on resolution; low DPI keeps the tests fast on a busy 2-core box
# one backbone, three methods, the P ablation only: every kind of figure, quickly
SMALL = {**PARAMS, "backbones": [CNN], "families": {"cnn": [CNN], "vit": []},
         "explain": {"baselines": {"cnn": ["gradcam", "layercam"]}}, "sanity": {"methods": {"cnn": ["scan"]}},
         "ablation": {"backbones": [CNN], "percentiles": [0, 95, 50]}}


@pytest.fixture(autouse=True)
def _low_dpi(monkeypatch):
    monkeypatch.setattr(figures, "DPI", DPI)


def _png_size(path: Path) -> tuple[int, int]:
    assert path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 500, path
    with Image.open(path) as im:
        im.load()
        return im.size


def _write_maps(maps_dir: Path, backbone: str, methods: list[str], indices: list[int], side: int = 32,
                labels: list[int] | None = None) -> None:
    rng = np.random.default_rng(0)
    (maps_dir / backbone).mkdir(parents=True, exist_ok=True)
    labels = [0] * len(indices) if labels is None else labels
    for k, m in enumerate(methods):
        # a method may store its images in another order
        order, lab = (indices, labels) if k % 2 == 0 else (indices[::-1], labels[::-1])
        arrays = {"maps": rng.random((len(order), side, side)).astype(np.float16), "indices": np.asarray(order),
                  "labels": np.asarray(lab)}
        if m == "scan":
            arrays["recon"] = rng.random((min(8, len(order)), 3, side, side)).astype(np.float16)
        np.savez(maps_dir / backbone / f"{m}.npz", **arrays)


def _run(tmp_path: Path, out: str, loader=None):
    res_dir = tmp_path / "results" / "test"
    results = load_results(res_dir, SMALL)
    return render_figures(results, build_tables(results, SMALL), SMALL, tmp_path / "maps", res_dir, tmp_path / out,
                          loader, n_rows=3)


@pytest.fixture
def run_tree(tmp_path):
    res_dir = make_results_tree(tmp_path, SMALL)
    _write_maps(tmp_path / "maps", CNN, ["scan", "gradcam", "layercam"], [40, 12, 7, 33, 21], labels=[2, 0, 2, 1, 0])
    _write_maps(tmp_path / "maps", "stray_backbone", ["scan"], [1])   # not in the params: never drawn
    rng = np.random.default_rng(1)   # example maps the P ablation saved for two of its three settings
    for s, idx in (("0", [12, 7, 99]), ("95", [7, 50, 12])):
        np.savez(res_dir / "ablation" / "p" / CNN / f"{s}.npz", maps=rng.random((3, 32, 32)).astype(np.float16),
                 indices=np.asarray(idx))
    return tmp_path


def test_render_figures_draws_every_figure_of_the_run(run_tree):
    requested = []

    def loader(idx, side):
        requested.append((list(idx), side))
        return np.random.default_rng(2).random((len(idx), side, side, 3))

    figs = _run(run_tree, "figures", loader)
    out = run_tree / "figures"
    assert [f.path.name for f in figs] == [f"qualitative_{CNN}.png", f"scan_reconstruction_{CNN}.png",
                                           f"perturbation_{CNN}.png", f"training_{CNN}.png",
                                           f"sanity_similarity_{CNN}.png", "ablation_p.png",
                                           "p_sweep.png", f"ablation_p_maps_{CNN}.png", "scaling.png"]
    assert sorted(p.name for p in out.iterdir()) == sorted(f.path.name for f in figs)
    assert all(f.caption for f in figs)
    # the qualitative grid: one row per class (the first of each in SCAN's order, by label), image + 3 methods,
    # a colour bar on the right, the title on top
    w, h = _png_size(out / f"qualitative_{CNN}.png")
    assert w == round((1.6 * 4 + figures.CBAR_WIDTH) * DPI) and h == round((1.6 * 3 + figures.TITLE_HEIGHT) * DPI)
    assert requested[0] == ([12, 33, 40], 32)
    # the ablation grid uses the images both settings share, in order: 12 and 7 (50 has no example maps)
    assert requested[-1] == ([12, 7], 32)
    w, _ = _png_size(out / f"ablation_p_maps_{CNN}.png")
    assert w == round((1.6 * 3 + figures.CBAR_WIDTH) * DPI)  # image + 2 settings + colour bar
    for f in figs:
        _png_size(f.path)


def test_figures_are_byte_identical_for_equal_inputs(run_tree):
    first, second = _run(run_tree, "a"), _run(run_tree, "b")
    assert [f.path.read_bytes() for f in first] == [f.path.read_bytes() for f in second]
    w, _ = _png_size(run_tree / "a" / f"qualitative_{CNN}.png")   # no images: maps alone
    assert w == round((1.6 * 3 + figures.CBAR_WIDTH) * DPI)


def test_qualitative_rows_cover_each_class_once():
    """One row per class, ascending label, the first image of each class in the lead's order, among the images
    every method has; every column holds that image's own map whatever order its method stored them in."""
    indices, labels = [5, 9, 3, 8, 1, 7, 4], [3, 1, 3, 0, 1, 2, 0]
    maps_of = lambda order: np.stack([np.full((4, 4), i / 10) for i in order])  # noqa: E731  map value = row/10
    lead = {"maps": maps_of(indices), "indices": np.asarray(indices), "labels": np.asarray(labels)}
    other_order = [7, 4, 1, 8, 3, 5]          # lacks image 9 (the first of class 1): class 1 falls to image 1
    other = {"maps": maps_of(other_order), "indices": np.asarray(other_order)}
    idx, rows, columns = figures.one_per_class({"SCAN": lead, "other": other}, "SCAN")
    assert rows == [0, 1, 2, 3] and idx == [8, 1, 7, 5]
    chosen = dict(zip(indices, labels))
    assert sorted(chosen[i] for i in idx) == sorted(set(labels))      # each class exactly once
    for col in columns.values():
        assert col.shape == (4, 4, 4) and np.allclose(col[:, 0, 0], np.asarray(idx) / 10, atol=1e-3)


def test_qualitative_rows_need_labels():
    z = {"maps": np.zeros((1, 4, 4)), "indices": np.asarray([0])}
    with pytest.raises(ScanbenchError, match="maps/b/scan.npz has no `labels`"):
        figures.one_per_class({"SCAN": z}, "SCAN", source="maps/b/scan.npz")


def test_a_map_the_params_name_must_exist(run_tree):
    (run_tree / "maps" / CNN / "layercam.npz").unlink()
    with pytest.raises(ScanbenchError, match=rf"maps/{CNN}/layercam\.npz is missing: run the `explain_cnn`"):
        _run(run_tree, "figures")


def test_map_grid_overlays_the_map_on_the_image(tmp_path):
    """A map of ones over a black image must colour the overlay cell (jet at 1 = dark red), not leave it black."""
    p = plot_map_grid(np.zeros((1, 16, 16, 3)), {"ones": np.ones((1, 16, 16))}, tmp_path / "g.png")
    arr = np.asarray(Image.open(p).convert("RGB")).astype(int)
    left, right = arr[:, : arr.shape[1] // 2], arr[:, arr.shape[1] // 2:]
    assert (left.sum(-1) == 0).sum() > 100           # the black image cell
    assert ((right[..., 0] > 60) & (right[..., 1] < 20) & (right[..., 2] < 20)).sum() > 100
    with pytest.raises(ValueError):
        plot_map_grid(None, {}, tmp_path / "empty.png")


@pytest.fixture
def drawn(monkeypatch):
    """The figures render_figures draws, by file name, kept open for inspection (then saved as usual)."""
    kept = {}
    save = figures._save

    def keep(fig, path):
        kept[Path(path).name] = fig
        fig.canvas.draw()          # lay out (constrained layout runs at draw time)
        return save(fig, path)

    monkeypatch.setattr(figures, "_save", keep)
    monkeypatch.setattr(figures.plt, "close", lambda fig=None: None)
    yield kept
    for fig in kept.values():
        figures.plt.close(fig)


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text")) if t.get_text()]


def _overlaps(a, b, renderer) -> bool:
    return a.get_window_extent(renderer).overlaps(b.get_window_extent(renderer))


def test_figures_are_labelled_and_show_their_intervals(run_tree, drawn):
    """Every figure: a title that overlaps no panel title, every panel's axes named, method names from the
    registry; map grids with a colour bar; intervals drawn where the results have them; complete legends."""
    _run(run_tree, "figures", lambda idx, side: np.zeros((len(idx), side, side, 3)))
    assert set(drawn) == {p.name for p in (run_tree / "figures").iterdir()}
    for name, fig in drawn.items():
        renderer = fig.canvas.get_renderer()
        title = fig._suptitle
        assert title is not None and title.get_text(), name
        panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>" and ax.axison]
        for ax in panels:
            assert not _overlaps(title, ax.title, renderer) or not ax.title.get_text(), (name, ax.title.get_text())
            if not name.startswith(("qualitative", "scan_reconstruction", "ablation_p_maps")):
                assert ax.get_xlabel(), (name, ax.get_title())
        if not name.startswith(("qualitative", "scan_reconstruction", "ablation_p_maps")):
            assert any(ax.get_ylabel() for ax in panels), name
        bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
        if name.startswith(("qualitative", "scan_reconstruction", "ablation_p_maps")):
            assert len(bars) == 1 and bars[0].get_ylabel(), name
    # method names: the registry's labels, never the registry's keys
    heads = [ax.get_title() for ax in drawn[f"qualitative_{CNN}.png"].axes[:4]]
    assert heads == ["image", METHOD_LABELS["gradcam"], METHOD_LABELS["layercam"], METHOD_LABELS["scan"]]
    legend = _texts(drawn[f"perturbation_{CNN}.png"])
    assert any(t.startswith(f"{METHOD_LABELS['scan']}: 6.1 [4.6, 7.3") for t in legend), legend   # AUC + CI
    assert not any("gradcam" in t or "layercam" in t for t in legend)
    # intervals: error bars on our ablation bars (the paper's hollow bars have none), the P sweep's and the
    # scaling figure's AUC-D
    ax = drawn["ablation_p.png"].axes[0]
    caps = [c for c in ax.containers if getattr(c, "errorbar", None) is not None]
    assert len(caps) == 1 and ax.get_xlabel() == "inference percentile P" and ax.get_ylabel() == "AUC-D (%)"
    for name in ("p_sweep.png", "scaling.png"):
        auc_d = drawn[name].axes[0 if name == "p_sweep.png" else 2]
        assert any(type(c).__name__ == "ErrorbarContainer" and c.has_yerr for c in auc_d.containers), name
        assert "95% CI" in auc_d.get_title()
    # the sanity figure's legend: the method, its interval band, the reference line and the zero line
    legend = _texts(drawn[f"sanity_similarity_{CNN}.png"].legends[0])
    assert legend[0] == METHOD_LABELS["scan"] and any("95% CI" in t for t in legend)
    assert any(t.startswith("reference: another image's map") for t in legend) and "0: no similarity" in legend
    # the training curves: against the optimiser step, a panel per quantity
    train = drawn[f"training_{CNN}.png"]
    assert [ax.get_xlabel() for ax in train.axes[:2]] == ["optimiser step"] * 2
    assert [ax.get_title() for ax in train.axes[:2]] == ["loss (Eq. 10)", "self-confidence area"]
    assert [t.get_text() for t in train.axes[1].get_legend().get_texts()] == [
        "layer default", "target area 1 / (1 + alpha) = 0.20"]


def _write_grid_maps(maps_dir: Path, backbone: str, methods: list[str], side: int = 16, n: int = 2) -> None:
    rng = np.random.default_rng(1)
    rows = np.arange(4 * n).reshape(n, 4)
    for m in methods:
        (maps_dir / "grid" / backbone).mkdir(parents=True, exist_ok=True)
        np.savez(maps_dir / "grid" / backbone / f"{m}.npz", maps=rng.random((n, 4, side, side)).astype(np.float16),
                 rows=rows, classes=np.tile(np.arange(4), (n, 1)))


def test_grid_figure_shows_every_method_on_each_mosaic_tile(tmp_path):
    """The grid pointing game's figure: a row per mosaic and tile, the mosaic and every method's map, a colour
    bar; a method's missing maps name its stage."""
    params = {**SMALL, "grid": {"n_mosaics": 2}}
    methods = ["scan", "gradcam", "layercam"]
    _write_grid_maps(tmp_path / "maps", CNN, methods)
    loader = lambda idx, side: np.full((len(idx), side, side, 3), 0.5)   # noqa: E731
    fig = figures.grid_figure(CNN, "cnn", params, tmp_path / "maps", tmp_path / "out", loader, ["a", "b", "c", "d"])
    w, h = _png_size(fig.path)
    assert fig.path.name == f"grid_{CNN}.png" and "first 2 mosaics" in fig.caption
    assert h > w * 0.6   # 8 rows (2 mosaics x 4 tiles) of 4 columns (mosaic + 3 methods) and the colour bar
    (tmp_path / "maps" / "grid" / CNN / "layercam.npz").unlink()
    with pytest.raises(ScanbenchError, match="layercam.npz is missing: run the `grid_cnn` stage"):
        figures.grid_figure(CNN, "cnn", params, tmp_path / "maps", tmp_path / "out", loader, None)
