"""Drop% / Inc% on a 2-class toy model whose probabilities are known in closed form; Win% with ties."""
import math

import numpy as np
import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.metrics.confidence import drop_inc
from scanbench.report.results import win_rates


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def toy_forward(x):
    """logits = [4 * mean(x), 0]: p(class 0) = sigmoid(4 * mean pixel value)."""
    return torch.stack([4 * x.flatten(1).mean(1), torch.zeros(x.shape[0])], 1)


def test_drop_inc_closed_form():
    images = torch.ones(3, 3, 4, 4)
    maps = torch.stack([torch.full((4, 4), 0.5), torch.full((4, 4), 0.5), torch.ones(4, 4)])
    classes = torch.tensor([0, 1, 0])
    drop, inc = drop_inc(toy_forward, images, maps, classes)
    y0, o0 = sigmoid(4), sigmoid(2)
    # image 0: class 0 loses confidence when half the intensity is kept
    assert drop[0] == pytest.approx((y0 - o0) / y0 * 100)
    assert inc[0] == 0
    # image 1: class 1 gains (1 - sigmoid(2) > 1 - sigmoid(4)): no drop, an increase
    assert drop[1] == 0 and inc[1] == 100
    # image 2: the map keeps everything: O == Y, neither drop nor increase
    assert drop[2] == pytest.approx(0.0, abs=1e-9) and inc[2] == 0


def test_drop_inc_multiplies_in_image_space():
    """E = map * image: a map that is zero on half the pixels halves the mean pixel value."""
    images = torch.rand(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    maps = torch.zeros(1, 4, 4)
    maps[:, :, :2] = 1.0
    drop, _ = drop_inc(toy_forward, images, maps, torch.tensor([0]))
    y = sigmoid(4 * images.mean().item())
    o = sigmoid(4 * (images[..., :2].sum() / images.numel()).item())
    assert drop[0] == pytest.approx(max(0.0, y - o) / y * 100, rel=1e-5)


def test_drop_inc_rejects_mismatched_maps():
    with pytest.raises(ScanbenchError):
        drop_inc(toy_forward, torch.ones(2, 3, 4, 4), torch.ones(2, 5, 5), torch.tensor([0, 0]))


def test_win_rates_with_ties():
    drops = {"a": np.array([0.0, 5.0, 3.0, 1.0]),
             "b": np.array([0.0, 2.0, 4.0, 1.0]),
             "c": np.array([1.0, 2.0, 3.0, 0.0])}
    # image 0: a, b tie at 0; image 1: b, c tie at 2; image 2: a, c tie at 3; image 3: c alone
    assert win_rates(drops) == pytest.approx({"a": 50.0, "b": 50.0, "c": 75.0})
    assert win_rates({"only": np.array([3.0, 1.0])}) == {"only": 100.0}
    assert win_rates({}) == {}
