"""The centre prior: one centred isotropic Gaussian for every image, sigma a fraction of the image side."""
import math

import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.explainers import family_methods, make_explainer
from scanbench.explainers.centre import centre_map
from scanbench.explainers.factory import explainer_from_params


def _images(n, size, seed):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_same_map_for_every_image_and_class(tiny_cnn):
    model, spec = tiny_cnn
    ex = make_explainer("centre", model, spec)
    a = ex.explain(_images(3, 64, 0), torch.tensor([0, 4, 9]))
    b = ex.explain(_images(2, 64, 1), torch.tensor([2, 2]))
    assert a.shape == (3, 64, 64) and a.min() == 0 and a.max() == 1
    for m in (*a, *b):
        # one map for all; float32 kernels may differ across CPUs
        torch.testing.assert_close(m, a[0], rtol=1e-6, atol=1e-6)


def test_peak_at_the_centre_and_radially_decreasing(tiny_cnn):
    model, spec = tiny_cnn
    m = make_explainer("centre", model, spec).explain(_images(1, 64, 2))[0]
    # an even side: the four pixels around the centre share the maximum
    assert m[31:33, 31:33].min() == pytest.approx(1.0, abs=1e-6)
    assert (m[31, :32].diff() > 0).all() and (m[31, 32:].diff() < 0).all()        # up to the centre, then down
    torch.testing.assert_close(m, m.T, rtol=0, atol=1e-6)                          # isotropic
    torch.testing.assert_close(m, m.flip(0).flip(1), rtol=0, atol=1e-6)


def test_sigma_is_a_fraction_of_the_side():
    """exp(-r^2 / (2 s^2)) with s = sigma * side: one s from the centre the raw map is e^-1/2 of its peak."""
    side = 224
    raw = centre_map(side, side, 0.25).double()
    s = 0.25 * side                                     # 56 px
    y, x = 111, 112 + 56                                # pixel centres 0.5 px and 56.5 px from the centre
    r2 = 0.5 ** 2 + 56.5 ** 2
    assert raw[y, x].item() == pytest.approx(math.exp(-r2 / (2 * s * s)), rel=1e-6)
    assert raw[111, 111].item() == pytest.approx(math.exp(-0.5 / (2 * s * s)), rel=1e-6)
    wide, narrow = centre_map(64, 64, 0.5), centre_map(64, 64, 0.1)
    assert wide[0, 0] > narrow[0, 0] and wide[0, 0].item() == pytest.approx(math.exp(-2 * 31.5 ** 2 / 2 / 32 ** 2),
                                                                            rel=1e-6)


def test_sigma_from_params_and_bad_sigma(tiny_cnn):
    model, spec = tiny_cnn
    params = {"seed": 0, "p": 95, "explain": {"batch_size": 4, "centre": {"sigma": 0.1}}}
    ex = explainer_from_params("centre", model, spec, params)
    assert ex.sigma == 0.1
    torch.testing.assert_close(ex._explain(_images(1, 64, 3), torch.tensor([0]))[0], centre_map(64, 64, 0.1))
    assert make_explainer("centre", model, spec).sigma == 0.25
    for bad in (0, -0.25, float("nan"), float("inf"), 11.0, "0.25", True, None):
        with pytest.raises(ScanbenchError, match=r"explain\.centre\.sigma must be a fraction of the image side"):
            make_explainer("centre", model, spec, sigma=bad)
    with pytest.raises(ScanbenchError, match=r"explain\.centre\.sigma is missing"):
        explainer_from_params("centre", model, spec, {**params, "explain": {"batch_size": 4}})


def test_applies_to_both_families(tiny_vit):
    assert "centre" in family_methods("cnn") and "centre" in family_methods("vit")
    model, spec = tiny_vit
    m = make_explainer("centre", model, spec).explain(_images(2, spec.input_size, 4))
    assert m.shape == (2, spec.input_size, spec.input_size)
