"""Sanity checks: weight randomisation really re-initialises everything; random labels avoid the
prediction; the three settings explain the right model and class."""
import copy

import pytest
import torch

from scanbench.engine import ForwardEngine
from scanbench.explainers.base import make_explainer
from scanbench.sanity import SETTINGS, randomize_weights, random_other_classes, sanity_check

FRACTIONS = [0.0, 0.3, 0.6, 0.9]


def shifted(model):
    """A copy whose every parameter differs from any default init value (so 'unchanged' is detectable)."""
    m = copy.deepcopy(model)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.37)
    return m


@pytest.mark.parametrize("fixture", ["tiny_cnn", "tiny_vit"])
def test_randomize_weights_touches_every_parameter(fixture, request):
    model, _ = request.getfixturevalue(fixture)
    trained = shifted(model)
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    rand = randomize_weights(trained, seed=3)
    for name, p in rand.named_parameters():
        assert not torch.equal(p, before[name]), f"{name} was not re-initialised"
    if fixture == "tiny_vit":
        assert not torch.equal(rand.net.pos_embed, before["net.pos_embed"])
        assert not torch.equal(rand.net.cls_token, before["net.cls_token"])
    # preprocessing buffers stay; the original model is untouched; the same seed gives the same model
    assert torch.equal(rand.mean, trained.mean) and torch.equal(rand.std, trained.std)
    for k, v in trained.state_dict().items():
        assert torch.equal(v, before[k])
    again = randomize_weights(trained, seed=3)
    for (_, a), (_, b) in zip(rand.named_parameters(), again.named_parameters()):
        assert torch.equal(a, b)
    other = randomize_weights(trained, seed=4)
    assert any(not torch.equal(a, b) for a, b in zip(rand.parameters(), other.parameters()))


def test_randomize_weights_resets_batchnorm_statistics(tiny_cnn):
    model, _ = tiny_cnn
    trained = shifted(model)
    bn = next(m for m in trained.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_mean.fill_(5.0)
    rand = randomize_weights(trained, seed=0)
    rbn = next(m for m in rand.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert torch.equal(rbn.running_mean, torch.zeros_like(rbn.running_mean))


def test_random_other_classes():
    pred = torch.arange(10).repeat(300)
    other = random_other_classes(pred, 10, seed=0)
    assert (other != pred).all() and other.min() >= 0 and other.max() <= 9
    # uniform over the 9 other classes: each appears about 300 / 9 times per predicted class
    for c in range(10):
        counts = torch.bincount(other[pred == c], minlength=10)
        assert counts[c] == 0
        assert counts[torch.arange(10) != c].min() > 15
    assert torch.equal(other, random_other_classes(pred, 10, seed=0))
    # two classes: the other class is forced
    assert torch.equal(random_other_classes(torch.tensor([0, 1, 1]), 2, seed=5), torch.tensor([1, 0, 0]))


def test_sanity_check_explains_the_right_model_and_class(tiny_cnn):
    model, spec = tiny_cnn
    images = torch.rand(4, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3])
    engine = ForwardEngine(model, "torch", batch_size=32)
    pred = engine(images).argmax(1)
    calls = []

    class Recording:
        def __init__(self, m):
            self.inner = make_explainer("random", m, spec, seed=0)
            self.m = m

        def explain(self, x, classes):
            calls.append((self.m, classes.clone()))
            return self.inner.explain(x, classes)

    def make(m, forward):
        assert forward(images).shape == (4, 10)
        return Recording(m)

    out = sanity_check(make, model, engine, images, labels, spec.grid, FRACTIONS, seed=0)
    assert list(out) == list(SETTINGS)
    for r in out.values():
        assert set(r) == {"auc_d", "neg_auc", "pos_auc"}
        assert r["auc_d"] == pytest.approx(r["neg_auc"] - r["pos_auc"])
        assert 0 <= r["pos_auc"] <= 90 and 0 <= r["neg_auc"] <= 90
    (m0, c0), (m1, c1), (m2, c2) = calls
    assert m0 is model and torch.equal(c0, pred)
    assert m1 is not model and torch.equal(c1, m1(images).argmax(1))
    assert m2 is model and (c2 != pred).all()
