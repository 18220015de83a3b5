"""The grid pointing game: mosaics (candidates, the correctness filter, seeded draws, composition), per-tile share
and pointing (chance is 0.25 for any image-independent map), the driver, and the intervals over mosaics.
Synthetic tensors and a synthetic manifest; the one real-image test is marked slow."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.explainers.base import normalize_maps
from scanbench.explainers.centre import centre_map
from scanbench.grid_pointing import (
    GridScores,
    candidate_rows,
    check_side,
    compose,
    correct_alone,
    draw_mosaics,
    load_mosaics,
    max_mosaics,
    method_summary,
    mosaic_classes,
    paired_summary,
    per_mosaic,
    power_estimate,
    score_mosaics,
    tile_masks,
    tile_pointing,
    tile_pointings,
    tile_share,
    tile_shares,
)
from scanbench.metrics.bootstrap import bootstrap_ci, paired_bootstrap_ci
from scanbench.metrics.localisation import energy_in_boxes, pointing_game

PARAMS = {"seed": 0, "explain": {"n_images": 30}, "features": {"n_holdout": 20}}


def _manifest(n_classes: int = 10, per_class: int = 12) -> pd.DataFrame:
    """A train and a val split of n_classes x per_class images each (no files: rows only)."""
    rows = [{"path": f"{split}/c{c}/{i}.png", "label": c, "split": split}
            for split in ("train", "val") for c in range(n_classes) for i in range(per_class)]
    return pd.DataFrame(rows)


def _painted(size: int, tile: int, n: int = 1) -> torch.Tensor:
    """n maps of side `size` that are 1 inside `tile` and 0 elsewhere."""
    return torch.from_numpy(np.repeat(tile_masks(size)[tile][None], n, 0).astype(np.float32))


# ------------------------------------------------------------------------------------------------ candidates
def test_candidates_exclude_eval_and_holdout_rows():
    from scanbench.data import eval_indices, holdout_indices

    manifest = _manifest()
    cand = candidate_rows(manifest, PARAMS)
    ev, ho = eval_indices(manifest, PARAMS), holdout_indices(manifest, PARAMS)
    assert len(ev) == 30 and len(ho) == 20
    assert not set(cand) & set(ev) and not set(cand) & set(ho)
    assert (manifest["split"].to_numpy()[cand] == "val").all()
    assert len(cand) == (manifest["split"] == "val").sum() - 50   # every other val image is a candidate
    assert (np.diff(cand) > 0).all()


def test_correct_alone_keeps_only_correct_images():
    logits = torch.tensor([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 0.0, 5.0], [1.0, 1.1, 1.0]])
    labels = np.array([0, 2, 2, 1])
    assert correct_alone(logits, labels).tolist() == [True, False, True, True]
    # with a confidence floor the barely-right last image goes
    assert correct_alone(logits, labels, min_confidence=0.5).tolist() == [True, False, True, False]


@pytest.mark.parametrize("logits, labels", [(np.zeros((3, 4)), [0, 1]), (np.zeros(4), [0]),
                                            (np.zeros((2, 4)), [0, 4])])
def test_correct_alone_bad_input(logits, labels):
    with pytest.raises(ScanbenchError):
        correct_alone(logits, labels)


# ------------------------------------------------------------------------------------------------ mosaics
def test_draw_is_seeded_distinct_classes_no_reuse():
    manifest = _manifest()
    rows = candidate_rows(manifest, PARAMS)
    labels = manifest["label"].to_numpy()[rows]
    a = draw_mosaics(rows, labels, 15, seed=3)
    assert a.shape == (15, 4) and a.dtype == np.int64
    assert np.array_equal(a, draw_mosaics(rows, labels, 15, seed=3))       # the same for the same seed
    assert not np.array_equal(a, draw_mosaics(rows, labels, 15, seed=4))
    assert set(a.ravel()) <= set(rows)
    assert len(np.unique(a)) == a.size                                      # no image in two mosaics
    classes = mosaic_classes(manifest, a)
    assert all(len(set(c)) == 4 for c in classes)                          # four distinct classes each
    # the tile order is drawn too: a class is not always in the same tile, nor classes sorted
    assert len({tuple(np.argsort(c)) for c in classes}) > 1


def test_draw_reaches_the_maximum_on_unbalanced_classes():
    # 4 classes of 5 images and one of 20: only 5 mosaics (each needs 4 distinct classes)
    labels = np.repeat(np.arange(5), [5, 5, 5, 5, 20])
    rows = np.arange(len(labels)) + 1000
    assert max_mosaics(labels) == 6        # the big class can fill one tile of every mosaic: (20 + 4) / 4 = 6
    for seed in range(20):
        m = draw_mosaics(rows, labels, 6, seed)
        lab = labels[m - 1000]
        assert all(len(set(r)) == 4 for r in lab) and len(np.unique(m)) == m.size
    with pytest.raises(ScanbenchError, match="at most 6"):
        draw_mosaics(rows, labels, 7, 0)


@pytest.mark.parametrize("rows, labels, n", [([1, 2, 3, 4], [0, 1, 2], 1), ([1, 1, 2, 3], [0, 1, 2, 3], 1),
                                             ([1, 2, 3, 4], [0, 1, 2, 3], 0), ([1, 2, 3, 4], [0, 1, 2, 2], 1)])
def test_draw_bad_input(rows, labels, n):
    with pytest.raises(ScanbenchError):
        draw_mosaics(rows, labels, n, 0)


def test_compose_row_major_and_masks():
    tiles = torch.stack([torch.full((3, 2, 3), float(k)) for k in range(4)])   # 4 x 3 x 2 x 3
    mosaic = compose(tiles)
    assert mosaic.shape == (3, 4, 6)
    assert mosaic[0].tolist() == [[0, 0, 0, 1, 1, 1]] * 2 + [[2, 2, 2, 3, 3, 3]] * 2
    batch = compose(torch.stack([tiles, tiles + 4]))
    assert batch.shape == (2, 3, 4, 6) and torch.equal(batch[1], mosaic + 4)
    masks = tile_masks((4, 6))
    for k in range(4):
        assert np.array_equal(masks[k], mosaic[0].numpy() == k)
    assert masks.sum(0).tolist() == np.ones((4, 6)).tolist()    # every pixel in exactly one tile


@pytest.mark.parametrize("size", [223, 1, 0, 2.0, True])
def test_odd_side_is_refused(size):
    with pytest.raises(ScanbenchError, match="even input side"):
        check_side(size)


def test_odd_maps_are_refused():
    with pytest.raises(ScanbenchError, match="even input side"):
        tile_share(np.ones((1, 7, 7)), 0)
    with pytest.raises(ScanbenchError, match="even input side"):
        tile_masks(9)


# ------------------------------------------------------------------------------------------------ scores
@pytest.mark.parametrize("size", [8, 56, 224])
def test_uniform_constant_and_zero_maps_score_exactly_a_quarter(size):
    maps = torch.stack([torch.zeros(size, size), torch.ones(size, size), torch.full((size, size), 0.3),
                        torch.full((size, size), 1 / 3)])
    assert tile_shares(maps).tolist() == [[0.25] * 4] * 4     # exactly, every tile
    assert tile_pointings(maps).tolist() == [[0.25] * 4] * 4


@pytest.mark.parametrize("size", [8, 64, 224])
@pytest.mark.parametrize("sigma", [0.1, 0.25, 1.0])
def test_centre_prior_scores_exactly_a_quarter(size, sigma):
    raw = centre_map(size, size, sigma)
    maps = normalize_maps(raw[None])          # as the centre explainer returns it
    assert tile_shares(maps).tolist() == [[0.25] * 4]
    assert tile_pointings(maps).tolist() == [[0.25] * 4]   # its four equal maxima, one per tile
    assert tile_shares(raw[None].double()).tolist() == [[0.25] * 4]


def test_painting_the_right_tile_scores_one_the_wrong_tile_zero():
    for k in range(4):
        maps = _painted(16, k, 4)
        assert tile_share(maps, k).tolist() == [1.0] * 4
        assert tile_pointing(maps, k).tolist() == [1.0] * 4
        others = [t for t in range(4) if t != k]
        assert tile_share(maps[:3], others).tolist() == [0.0] * 3
        assert tile_pointing(maps[:3], others).tolist() == [0.0] * 3


def test_unique_maximum_points_ties_split_by_tied_pixels():
    m = torch.rand(2, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.5
    m[0, 12, 3] = 1.0                                    # bottom-left
    m[1, 2, 2], m[1, 3, 3], m[1, 2, 12] = 1.0, 1.0, 1.0  # two maxima top-left, one top-right
    pts = tile_pointings(m)
    assert pts[0].tolist() == [0.0, 0.0, 1.0, 0.0]
    assert np.allclose(pts[1], [2 / 3, 1 / 3, 0, 0])
    # the same rules as the box localisation (tile masks as boxes)
    masks = tile_masks(16)
    for k in range(4):
        box = np.repeat(masks[k][None], 2, 0)
        assert np.allclose(tile_share(m, k), energy_in_boxes(m.numpy(), box), atol=1e-12)
        assert np.allclose(tile_pointing(m, k), pointing_game(m.numpy(), box), atol=1e-12)


def test_share_counts_positive_mass_only_and_sums_to_one():
    m = torch.randn(5, 12, 12, generator=torch.Generator().manual_seed(1))
    shares = tile_shares(m)
    assert np.allclose(shares.sum(1), 1.0) and (shares >= 0).all()
    pos = m.clamp_min(0).numpy()
    assert np.allclose(shares[:, 1], pos[:, :6, 6:].sum((1, 2)) / pos.sum((1, 2)))
    # a map with only negative values has no positive mass: the uniform answer
    assert tile_share(-torch.ones(1, 12, 12), 2).tolist() == [0.25]
    assert tile_share(torch.full((1, 12, 12), float("nan")), 2).tolist() == [0.25]


@pytest.mark.parametrize("tile", [4, -1, [0, 1], 0.5])
def test_bad_tile_index(tile):
    with pytest.raises(ScanbenchError, match="tile must be"):
        tile_share(torch.ones(3, 8, 8), tile)


def test_maps_must_be_three_dimensional():
    with pytest.raises(ScanbenchError, match="B x H x W"):
        tile_share(torch.ones(8, 8), 0)


# ------------------------------------------------------------------------------------------------ driver
class _TileModel(torch.nn.Module):
    """Logits over 10 classes: class c scores the mean of channel 0 in tile c % 4 (so a mosaic's tiles are
    recognised where its classes' tiles are bright)."""

    def forward(self, x):
        h, w = x.shape[-2] // 2, x.shape[-1] // 2
        t = torch.stack([x[:, 0, :h, :w], x[:, 0, :h, w:], x[:, 0, h:, :w], x[:, 0, h:, w:]], 1).mean((2, 3))
        return t[:, torch.arange(10) % 4]


def _oracle(images, classes):
    """A map painting the tile the class sits in: the class's position, found from the image (classes k and
    k + 4 both mark tile k % 4 in `_mosaics`)."""
    size = images.shape[-1]
    return torch.from_numpy(np.stack([tile_masks(size)[int(c) % 4] for c in classes]).astype(np.float32))


def _mosaics(n: int, size: int = 16):
    classes = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]] * n)[:n]
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(2)), classes


def test_score_mosaics_oracle_centre_and_random():
    x, classes = _mosaics(6)
    model = _TileModel()
    oracle = score_mosaics(model, _oracle, x, classes, batch_size=4)
    assert isinstance(oracle, GridScores)
    assert oracle.share.shape == oracle.pointing.shape == oracle.in_top4.shape == (6, 4)
    assert (oracle.share == 1).all() and (oracle.pointing == 1).all()
    # a class-blind map: the same for every class, so exactly 0.25 on average over each mosaic's tiles
    centre = score_mosaics(model, lambda im, c: normalize_maps(centre_map(16, 16, 0.25).expand(len(c), 16, 16)),
                           x, classes)
    assert (centre.share == 0.25).all() and (centre.pointing == 0.25).all()
    gen = torch.Generator().manual_seed(5)
    fixed = torch.rand(16, 16, generator=gen)
    blind = score_mosaics(model, lambda im, c: fixed.expand(len(c), 16, 16), x, classes)
    assert np.allclose(per_mosaic(blind.share), 0.25) and np.allclose(per_mosaic(blind.pointing), 0.25)
    assert np.array_equal(oracle.in_top4, centre.in_top4)     # the model's part does not depend on the method


def test_score_mosaics_explains_each_tile_class_in_order():
    x, classes = _mosaics(3)
    seen = []

    def explain(images, cls):
        seen.append((images.clone(), cls.clone()))
        return torch.zeros(len(cls), 16, 16)

    score_mosaics(_TileModel(), explain, x, classes, batch_size=2)
    images = torch.cat([s[0] for s in seen])
    assert torch.equal(torch.cat([s[1] for s in seen]), classes.reshape(-1))
    assert torch.equal(images, x.repeat_interleave(4, 0))


def test_score_mosaics_in_top4_reads_the_model():
    x, classes = _mosaics(2)
    x[:, 0] = 0.0
    # mosaic 0: tiles 0, 1, 2 at 1, 0.8, 0.6 -> classes 0, 4, 8 lead, then one of 1, 5, 9; 2, 6 and 3, 7 trail
    x[0, 0, :8, :8], x[0, 0, :8, 8:], x[0, 0, 8:, :8] = 1.0, 0.8, 0.6
    res = score_mosaics(_TileModel(), _oracle, x, classes)
    assert res.in_top4[0, 0] and not res.in_top4[0, 2] and not res.in_top4[0, 3]


@pytest.mark.parametrize("kwargs, match", [({"classes": torch.zeros(3, 3)}, "N x 4 classes"),
                                           ({"batch_size": 0}, "batch_size"),
                                           ({"explain": lambda im, c: torch.zeros(len(c), 8, 8)}, "returned maps")])
def test_score_mosaics_bad_input(kwargs, match):
    x, classes = _mosaics(3)
    args = {"model": _TileModel(), "explain": _oracle, "mosaics": x, "classes": classes, **kwargs}
    with pytest.raises(ScanbenchError, match=match):
        score_mosaics(**args)


# ------------------------------------------------------------------------------------------------ summaries
def test_summaries_resample_mosaics_with_the_project_bootstrap():
    rng = np.random.default_rng(0)
    share_a, share_b = rng.random((40, 4)), rng.random((40, 4)) * 0.5
    point_a = (rng.random((40, 4)) > 0.3).astype(float)
    s = method_summary(share_a, point_a, n_resamples=500, seed=7)
    ci = bootstrap_ci(np.stack([share_a.mean(1), point_a.mean(1)], 1), 500, 7)
    assert s["n_mosaics"] == 40 and s["share"] == pytest.approx(share_a.mean())
    assert s["share_ci"] == pytest.approx(ci[0].tolist()) and s["pointing_ci"] == pytest.approx(ci[1].tolist())
    p = paired_summary(share_a, share_b, n_resamples=500, seed=7)
    assert p["difference"] == pytest.approx(share_a.mean() - share_b.mean())
    assert p["ci"] == pytest.approx(paired_bootstrap_ci(share_a.mean(1), share_b.mean(1), 500, 7).tolist())
    assert p["half_width"] == pytest.approx((p["ci"][1] - p["ci"][0]) / 2)
    with pytest.raises(ScanbenchError, match="n x 4"):
        per_mosaic(np.zeros((4, 3)))
    with pytest.raises(ScanbenchError, match="same mosaics"):
        method_summary(share_a, point_a[:10])


def test_power_estimate_scales_as_one_over_root_n():
    rng = np.random.default_rng(1)
    a, b = rng.random((100, 4)), rng.random((100, 4))
    est = power_estimate(a, b, 0.05, n_resamples=2000, seed=0)
    assert est["n_needed"] == int(np.ceil(100 * (est["half_width"] / 0.05) ** 2))
    # quadrupling the mosaics (the same values again, 4 times) halves the half-width about
    big = power_estimate(np.tile(a, (4, 1)), np.tile(b, (4, 1)), 0.05, n_resamples=2000, seed=0)
    assert big["half_width"] == pytest.approx(est["half_width"] / 2, rel=0.15)
    assert power_estimate(a, a, 0.05)["n_needed"] == 1          # identical methods: no spread
    with pytest.raises(ScanbenchError, match="target_half_width"):
        power_estimate(a, b, 0.0)


# ------------------------------------------------------------------------------------------------ real images
@pytest.mark.slow
def test_load_mosaics_on_real_images(data_root):
    from scanbench.data import build_manifest, load_image

    manifest, _ = build_manifest(data_root, splits=("val",), check_images=False, limit_per_class=2)
    rows, labels = np.arange(len(manifest)), manifest["label"].to_numpy()
    mosaics = draw_mosaics(rows, labels, 2, seed=0)
    x = load_mosaics(data_root, manifest, mosaics, 64)
    assert x.shape == (2, 3, 64, 64) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert torch.equal(x[1, :, 32:, :32], load_image(data_root / manifest["path"][mosaics[1, 2]], 32))
