"""LIME, RISE and the random map: RISE against its formula computed mask by mask, determinism by seed,
batch == per image, and the shape/range contract."""
import math

import numpy as np
import pytest
import torch
from skimage.segmentation import quickshift
from skimage.transform import resize

from scanbench.engine import ForwardEngine
from scanbench.errors import ScanbenchError
from scanbench.explainers import make_explainer


def images(n, size, seed):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def blocky_images(n, size, seed):
    """Random colours on a 4 x 4 grid plus a little noise: quickshift finds several superpixels even at
    32 px (on pure noise it finds one or two)."""
    gen = torch.Generator().manual_seed(seed)
    blocks = torch.nn.functional.interpolate(torch.rand(n, 3, 4, 4, generator=gen), size=size, mode="nearest")
    return (blocks + 0.05 * torch.rand(n, 3, size, size, generator=gen)).clamp(0, 1)


def rise_reference(ex, model, x, c):
    """sum_i p_c(x * M_i) M_i / (N p1), one mask at a time; each mask rebuilt from its grid and shift
    with scikit-image's bilinear resize (RISE's reference implementation resizes with skimage)."""
    h, w = x.shape[-2:]
    cell = math.ceil(max(h, w) / ex.s)
    up = (ex.s + 1) * cell
    shifts = ex.shifts(h, w)
    sal = torch.zeros(h, w, dtype=torch.float64)
    for i in range(ex.n_masks):
        big = resize(ex.grids[i].numpy().astype(np.float64), (up, up), order=1, mode="edge",
                     anti_aliasing=False)
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        mask = torch.from_numpy(big[dy:dy + h, dx:dx + w])
        with torch.no_grad():
            p = torch.softmax(model((x * mask.float())[None]), 1)[0, c].double()
        sal += p * mask
    return sal / (ex.n_masks * ex.p1)


@pytest.mark.parametrize("fixture,size", [("tiny_cnn", 64), ("tiny_vit", 32)])
def test_rise_matches_formula(request, fixture, size):
    model, spec = request.getfixturevalue(fixture)
    x = images(2, size, 4)
    classes = torch.tensor([1, 6])
    ex = make_explainer("rise", model, spec, n_masks=12, s=4, p1=0.5, forward_batch_size=5, seed=3)
    raw = ex._explain(x, classes)
    assert raw.shape == (2, size, size)
    for i in range(2):
        ref = rise_reference(ex, model, x[i], int(classes[i])).float()
        assert torch.allclose(raw[i], ref, rtol=1e-4, atol=1e-6)
    # batch == per image
    single = torch.cat([ex._explain(x[i:i + 1], classes[i:i + 1]) for i in range(2)])
    assert torch.allclose(raw, single, rtol=1e-5, atol=1e-7)


def test_rise_masks():
    from scanbench.backbones import get_backbone

    spec = get_backbone("vit_tiny_convstem")
    ex = make_explainer("rise", torch.nn.Linear(1, 1), spec, n_masks=2000, s=7, p1=0.3, seed=0)
    assert abs(ex.grids.mean().item() - 0.3) < 0.01
    sh = ex.shifts(64, 64)
    cell = math.ceil(64 / 7)
    assert sh.min() >= 0 and sh.max() < cell and len(torch.unique(sh[:, 0])) == cell
    m = ex.masks(0, 50, 64, 64)
    assert m.shape == (50, 64, 64) and m.min() >= 0 and m.max() <= 1
    again = make_explainer("rise", torch.nn.Linear(1, 1), spec, n_masks=2000, s=7, p1=0.3, seed=0)
    assert torch.equal(again.masks(0, 50, 64, 64), m)
    other = make_explainer("rise", torch.nn.Linear(1, 1), spec, n_masks=2000, s=7, p1=0.3, seed=1)
    assert not torch.equal(other.masks(0, 50, 64, 64), m)


def test_rise_engine_matches_model(tiny_cnn):
    model, spec = tiny_cnn
    x = images(2, 64, 5)
    kw = dict(n_masks=8, s=4, p1=0.5, forward_batch_size=4, seed=0)
    a = make_explainer("rise", model, spec, **kw).explain(x)
    b = make_explainer("rise", model, spec, engine=ForwardEngine(model, "torch", batch_size=3), **kw).explain(x)
    assert torch.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("bad", [dict(p1=0.0), dict(p1=1.5), dict(n_masks=0), dict(s=0)])
def test_rise_bad_params(tiny_cnn, bad):
    model, spec = tiny_cnn
    with pytest.raises(ScanbenchError, match="explain.rise"):
        make_explainer("rise", model, spec, **bad)


@pytest.mark.parametrize("fixture,size", [("tiny_cnn", 64), ("tiny_vit", 32)])
def test_lime(request, fixture, size):
    model, spec = request.getfixturevalue(fixture)
    x = blocky_images(3, size, 6)
    classes = torch.tensor([0, 4, 9])
    kernel = 4 if size >= 64 else 2   # lime's default kernel (4) merges a 32 px image into 1-2 superpixels
    ex = make_explainer("lime", model, spec, num_samples=24, forward_batch_size=10, seed=7, kernel_size=kernel)
    maps = ex.explain(x, classes)
    assert maps.shape == (3, size, size) and maps.min() >= 0 and maps.max() <= 1
    for i in range(3):
        assert maps[i].max() == 1                       # every image explained
    assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[1], maps[2])
    # same seed -> same maps, batch or one by one
    single = torch.cat([ex.explain(x[i:i + 1], classes[i:i + 1]) for i in range(3)])
    assert torch.allclose(maps, single)
    # the map is one weight per quickshift superpixel (segmented independently here)
    raw = ex._explain(x[:1], classes[:1])[0].numpy()
    seg = quickshift(x[0].permute(1, 2, 0).double().numpy(), kernel_size=kernel, max_dist=200, ratio=0.2, rng=7)
    assert len(np.unique(seg)) > 2
    for s in np.unique(seg):
        vals = raw[seg == s]
        assert np.allclose(vals, vals[0])


def test_lime_class_and_engine(tiny_cnn):
    model, spec = tiny_cnn
    x = blocky_images(1, 64, 8)
    kw = dict(num_samples=24, forward_batch_size=8, seed=0)
    ex = make_explainer("lime", model, spec, **kw)
    a = ex._explain(x, torch.tensor([2]))
    assert not torch.allclose(a, ex._explain(x, torch.tensor([7])))
    b = make_explainer("lime", model, spec, engine=ForwardEngine(model, "torch"), **kw)._explain(x, torch.tensor([2]))
    assert torch.allclose(a, b, atol=1e-4)


def test_random_map(tiny_cnn):
    model, spec = tiny_cnn
    x = images(2, 64, 9)
    a = make_explainer("random", model, spec, seed=0).explain(x)
    assert a.shape == (2, 64, 64) and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a[0], a[1])
    assert torch.equal(a, make_explainer("random", model, spec, seed=0).explain(x))


def test_factory(tiny_cnn):
    from scanbench.explainers.factory import explainer_from_params

    model, spec = tiny_cnn
    params = {"seed": 5, "p": 95,
              "explain": {"batch_size": 4, "lime": {"num_samples": 33, "batch_size": 11},
                          "rise": {"n_masks": 20, "s": 6, "p1": 0.4, "batch_size": 7}}}
    rise = explainer_from_params("rise", model, spec, params)
    assert (rise.n_masks, rise.s, rise.p1, rise.forward_batch_size, rise.seed, rise.batch_size) == (20, 6, 0.4, 7, 5, 4)
    lime = explainer_from_params("lime", model, spec, params, engine="E")
    assert (lime.num_samples, lime.forward_batch_size, lime.engine) == (33, 11, "E")
    assert explainer_from_params("gradcam", model, spec, params).seed == 5
    with pytest.raises(ScanbenchError, match="does not apply"):
        explainer_from_params("rollout", model, spec, params)


@pytest.mark.parametrize("method, kw", [("lime", dict(num_samples=24, forward_batch_size=10, seed=7)),
                                        ("rise", dict(n_masks=12, s=4, p1=0.5, forward_batch_size=5, seed=3))])
def test_an_image_repeated_for_several_classes_gets_each_class_alone_map(tiny_cnn, method, kw):
    """The grid pointing game explains each mosaic once per tile class (the image repeated, four classes): LIME
    and RISE sample and classify it once for all of them, and each map is the one of that class alone."""
    model, spec = tiny_cnn
    x = blocky_images(2, 64, 6)
    batch, classes = torch.stack([x[0], x[0], x[0], x[1], x[1]]), torch.tensor([2, 7, 2, 4, 9])
    ex = make_explainer(method, model, spec, **kw)
    together = ex._explain(batch, classes)
    alone = torch.cat([ex._explain(batch[i:i + 1], classes[i:i + 1]) for i in range(len(batch))])
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1])
