"""Perturbation test: vectorised implementation vs a plain per-image, per-step loop; AUC arithmetic;
fair-resolution pooling."""
import numpy as np
import pytest
import torch

from scanbench.engine import ForwardEngine
from scanbench.errors import ScanbenchError
from scanbench.metrics import evaluate_maps, summarize
from scanbench.metrics.perturbation import auc, fair_resolution, per_image_auc, perturbation_correct, removal_rank

FRACTIONS = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]


def plain_perturbation(model, images, maps, labels, fractions):
    """The textbook loop: one image, one step, one order at a time."""
    n, _, h, w = images.shape
    pos = np.zeros((n, len(fractions)), dtype=bool)
    neg = np.zeros((n, len(fractions)), dtype=bool)
    for i in range(n):
        flat = maps[i].reshape(-1).numpy().astype(np.float64)
        for out, order in ((pos, np.argsort(-flat, kind="stable")), (neg, np.argsort(flat, kind="stable"))):
            for j, f in enumerate(fractions):
                k = int(f * h * w + 1e-6)
                x = images[i].clone().reshape(3, -1)
                x[:, order[:k]] = 0.0
                with torch.no_grad():
                    pred = model(x.reshape(1, 3, h, w)).argmax(1).item()
                out[i, j] = pred == labels[i].item()
    return pos, neg


@pytest.fixture(scope="module")
def cnn_case(tiny_cnn):
    model, spec = tiny_cnn
    g = torch.Generator().manual_seed(1)
    s = spec.input_size
    # Smooth random images (a random low-res pattern upsampled) so predictions vary with occlusion.
    images = torch.nn.functional.interpolate(torch.rand(6, 3, 8, 8, generator=g), size=(s, s), mode="bilinear")
    # Quantised maps: many ties, so the tie-break order is exercised too.
    maps = (torch.rand(6, s, s, generator=g) * 8).floor() / 7
    with torch.no_grad():
        labels = model(images).argmax(1)
    labels[::2] = (labels[::2] + 1) % 10  # some images start wrong
    return model, images, maps, labels


def test_vectorised_matches_plain_loop(cnn_case):
    model, images, maps, labels = cnn_case
    engine = ForwardEngine(model, "torch", batch_size=7)
    # A tiny chunk budget forces several chunks (of 1-2 images), exercising the chunk bookkeeping.
    res = perturbation_correct(engine, images, maps, labels, FRACTIONS, max_chunk_bytes=3 * 19 * 3 * 64 * 64 * 4)
    pos, neg = plain_perturbation(model, images, maps, labels, FRACTIONS)
    assert res.pos.shape == (6, 10) and res.pos.dtype == bool
    np.testing.assert_array_equal(res.pos, pos)
    np.testing.assert_array_equal(res.neg, neg)
    # the test is not vacuous: correctness actually changes along the curves
    assert pos.any() and not pos.all()


def test_removal_rank_ties_keep_raster_order():
    m = torch.tensor([[[0.5, 1.0], [0.5, 0.0]]])
    assert removal_rank(m, "pos").tolist() == [[1, 0, 2, 3]]   # 1.0 first, then the two 0.5s left to right
    assert removal_rank(m, "neg").tolist() == [[1, 3, 2, 0]]
    with pytest.raises(ScanbenchError):
        removal_rank(m, "sideways")


def test_black_pixels_counted_exactly():
    """Forward function that 'predicts' the number of black pixels: checks counts and all-channel removal."""
    h = w = 10
    images = torch.full((1, 3, h, w), 0.5)

    def forward(x):
        nblack = (x == 0).all(1).flatten(1).sum(1)
        partial = ((x == 0).any(1) & ~(x == 0).all(1)).flatten(1).sum(1)
        assert (partial == 0).all()                      # every channel of a removed pixel is black
        return torch.nn.functional.one_hot(nblack, h * w + 1).float()

    fractions = [0.0, 0.1, 0.3, 0.7, 0.9]
    for f in fractions:
        label = torch.tensor([int(round(f * 100))])
        res = perturbation_correct(forward, images, torch.rand(1, h, w), label, fractions)
        expected = [abs(g - f) < 1e-9 for g in fractions]
        assert res.pos[0].tolist() == expected and res.neg[0].tolist() == expected


def test_auc_hand_made_curves():
    x = FRACTIONS
    assert auc(np.full(10, 100.0), x) == pytest.approx(90.0)
    assert auc(np.zeros(10), x) == pytest.approx(0.0)
    # 100 at x=0 then 0: one triangle of width 0.1 -> 5
    assert auc(np.array([100.0] + [0.0] * 9), x) == pytest.approx(5.0)
    # linear decay 100 -> 10 over [0, 0.9]: (100 + 10) / 2 * 0.9
    assert auc(np.linspace(100, 10, 10), x) == pytest.approx(49.5)
    # per-image AUCs average to the AUC of the mean curve
    correct = np.random.default_rng(0).random((20, 10)) > 0.5
    assert per_image_auc(correct, x).mean() == pytest.approx(auc(correct.mean(0) * 100, x))


def test_summarize_auc_d_and_curves():
    pos = np.zeros((4, 10), bool)
    pos[:, 0] = True                                     # correct only before any removal
    neg = np.ones((4, 10), bool)
    v = summarize(FRACTIONS, pos, neg, n_resamples=50, seed=0)
    assert v["pos_curve"] == [100.0] + [0.0] * 9
    assert v["pos_auc"] == pytest.approx(5.0) and v["neg_auc"] == pytest.approx(90.0)
    assert v["auc_d"] == pytest.approx(85.0)
    assert v["auc_d_ci"] == pytest.approx([85.0, 85.0])  # identical images: a zero-width interval


def test_fair_resolution_constant_and_step():
    const = torch.full((2, 16, 16), 0.3)
    torch.testing.assert_close(fair_resolution(const, 4), const)
    step = torch.zeros(1, 16, 16)
    step[:, :, 8:] = 1.0                                   # left half 0, right half 1
    out = fair_resolution(step, 2)
    # pooled to 2x2 = [[0, 1], [0, 1]]; bilinear back: columns far from the edge keep 0 / 1, rows are constant
    assert out.shape == (1, 16, 16)
    torch.testing.assert_close(out[0, :, :4], torch.zeros(16, 4))
    torch.testing.assert_close(out[0, :, 12:], torch.ones(16, 4))
    assert torch.allclose(out[0], out[0, :1].expand(16, 16))
    assert (out[0, 0, 4:12].diff() > 0).all()              # a smooth ramp across the middle
    # a map that varies within a grid cell is averaged: the 4x4 cell mean survives
    checker = (torch.arange(16).view(1, 16) + torch.arange(16).view(16, 1)) % 2
    torch.testing.assert_close(fair_resolution(checker.float().unsqueeze(0), 4), torch.full((1, 16, 16), 0.5))


def test_evaluate_maps_record(cnn_case):
    model, images, maps, labels = cnn_case
    engine = ForwardEngine(model, "torch", batch_size=32)
    out = evaluate_maps(engine, images, maps, labels, labels, grid=2, fractions=FRACTIONS, n_resamples=20,
                        seed=0, calibration_maps=2)
    assert set(out["variants"]) == {"fair", "full"}
    for v in [*out["variants"].values(), out["calibration"]]:
        assert len(v["pos_curve"]) == 10
        assert v["auc_d"] == pytest.approx(v["neg_auc"] - v["pos_auc"])
        assert v["pos_auc_ci"][0] <= v["pos_auc"] <= v["pos_auc_ci"][1]
    pos, neg = plain_perturbation(model, images, maps, labels, FRACTIONS)
    assert out["variants"]["full"]["pos_auc"] == pytest.approx(auc(pos.mean(0) * 100, FRACTIONS))
    assert len(out["per_image"]["drop"]) == 6
    assert out["throughput"]["forward_img_per_s"] > 0
    # per-image AUC-D of each variant, in image order, for the report's paired comparisons
    full = out["variants"]["full"]["per_image_auc_d"]
    assert full == pytest.approx((per_image_auc(neg, FRACTIONS) - per_image_auc(pos, FRACTIONS)).tolist(), abs=1e-9)
    for v in out["variants"].values():
        assert len(v["per_image_auc_d"]) == 6 and np.mean(v["per_image_auc_d"]) == pytest.approx(v["auc_d"], abs=1e-6)
    assert "per_image_auc_d" not in out["calibration"]
