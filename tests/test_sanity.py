"""Sanity checks: weight randomisation really re-initialises everything; random labels avoid the
prediction; the three settings explain the right model and class."""
import copy
import math

import numpy as np
import pytest
import torch

from scanbench.engine import ForwardEngine
from scanbench.errors import ScanbenchError
from scanbench.explainers.base import make_explainer
from scanbench.sanity import (
    SETTINGS,
    cascade_steps,
    check_cascade,
    layer_groups,
    map_sanity,
    partially_randomised,
    random_other_classes,
    randomize_weights,
    sanity_check,
)
from scanbench.similarity import map_similarity, resize_maps, summarise_similarity

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

    kept = {}
    out = sanity_check(make, model, engine, images, labels, spec.grid, FRACTIONS, seed=0, maps_out=kept)
    assert list(out) == list(SETTINGS)
    # what map_sanity reuses: the predictions, the original and random-label maps, Table IV's randomised model
    assert torch.equal(kept["pred"], pred) and kept["original"].shape == kept["random_label"].shape == (4, 64, 64)
    for a, b in zip(kept["random_model"].parameters(), randomize_weights(model, seed=0).parameters()):
        assert torch.equal(a, b)
    for r in out.values():
        assert set(r) == {"auc_d", "neg_auc", "pos_auc"}
        assert r["auc_d"] == pytest.approx(r["neg_auc"] - r["pos_auc"])
        assert 0 <= r["pos_auc"] <= 90 and 0 <= r["neg_auc"] <= 90
    (m0, c0), (m1, c1), (m2, c2) = calls
    assert m0 is model and torch.equal(c0, pred)
    assert m1 is not model and torch.equal(c1, m1(images).argmax(1))
    assert m2 is model and (c2 != pred).all()


# ------------------------------------------------------------------ map similarity (Adebayo et al. 2018)


def smooth_maps(n, side, seed):
    """Blob-like maps (smoothed noise), as explanation maps look."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, side // 8, side // 8, generator=g)
    return torch.nn.functional.interpolate(x, size=side, mode="bicubic", align_corners=False)[:, 0].clamp(0, 1)


def test_similarity_of_identical_maps_is_one():
    a = smooth_maps(5, 64, 0)
    s = map_similarity(a, a.clone(), size=56)
    for m in ("spearman", "ssim", "hog"):
        np.testing.assert_allclose(s[m], 1.0, atol=1e-6)
    assert not s["constant"].any()


def test_similarity_of_independent_maps_is_near_zero():
    a, b = smooth_maps(40, 64, 1), smooth_maps(40, 64, 2)
    s = map_similarity(a, b, size=56)
    for m in ("spearman", "ssim", "hog"):
        assert abs(s[m].mean()) < 0.15, (m, s[m].mean())
        assert s[m].std() > 0.01          # per image, not one constant
    noise = map_similarity(torch.rand(20, 56, 56, generator=torch.Generator().manual_seed(3)),
                           torch.rand(20, 56, 56, generator=torch.Generator().manual_seed(4)), size=56)
    assert abs(noise["spearman"].mean()) < 0.05 and abs(noise["hog"].mean()) < 0.1


def test_similarity_of_an_inverted_map():
    # rank order reversed: Spearman -1; SSIM negative; HOG uses unsigned orientations: the same edges, 1
    a = smooth_maps(4, 64, 5)
    s = map_similarity(a, 1 - a, size=56)
    np.testing.assert_allclose(s["spearman"], -1.0, atol=1e-6)
    assert (s["ssim"] < -0.5).all()
    np.testing.assert_allclose(s["hog"], 1.0, atol=1e-6)


def test_similarity_of_a_constant_map_is_zero_and_counted():
    a = smooth_maps(3, 64, 6)
    b = a.clone()
    b[1] = 0.0                        # normalize_maps gives a constant map all zeros
    s = map_similarity(a, b, size=56)
    assert s["spearman"][1] == 0.0 and s["hog"][1] == 0.0
    assert s["constant"].tolist() == [False, True, False]
    out = summarise_similarity(s, n_resamples=200, seed=0)
    assert out["n_constant"] == 1 and out["n_images"] == 3
    assert out["spearman"] == pytest.approx(2 / 3, abs=1e-6)
    lo, hi = out["spearman_ci"]
    assert lo <= out["spearman"] <= hi
    assert len(out["per_image"]["hog"]) == 3


def test_similarity_resizes_and_refuses_bad_input():
    a = smooth_maps(2, 224, 7)
    small = resize_maps(a, 56)
    assert small.shape == (2, 56, 56) and small.min() == 0.0 and small.max() == pytest.approx(1.0)
    assert map_similarity(a, a, size=32)["spearman"] == pytest.approx([1.0, 1.0], abs=1e-6)
    with pytest.raises(ScanbenchError, match="similarity_size"):
        map_similarity(a, a, size=8)
    with pytest.raises(ScanbenchError, match="similarity_size"):
        map_similarity(a, a, size=56.0)
    with pytest.raises(ScanbenchError, match="same images"):
        map_similarity(a, a[:1], size=56)


@pytest.mark.parametrize("fixture, blocks", [("tiny_cnn", ["layer1", "layer2", "layer3", "layer4"]),
                                             ("tiny_vit", ["blocks.0", "blocks.1", "blocks.2"])])
def test_layer_groups_cover_every_weight_once(fixture, blocks, request):
    model, _ = request.getfixturevalue(fixture)
    groups = layer_groups(model)
    assert [g.name for g in groups] == ["stem", *blocks, "head"]
    for key in model.state_dict():
        owners = [g.name for g in groups if g.owns(key)]
        assert len(owners) == int(key.startswith("net.")), (key, owners)   # preprocessing buffers: none
    # a head fitted beside `net` (TargetModel.head, for non-ImageNet classes) tops the head group
    with_head = copy.deepcopy(model)
    with_head.fitted = torch.nn.Linear(4, 2)
    head = layer_groups(with_head)[-1]
    assert head.owns("fitted.weight") and head.owns("fitted.bias") and not head.owns("mean")
    if fixture == "tiny_vit":
        assert groups[0].owns("net.pos_embed") and groups[0].owns("net.cls_token")
        assert groups[-1].owns("net.head.weight")
    else:
        assert groups[0].owns("net.conv1.0.weight") and groups[-1].owns("net.fc.weight")


def test_check_cascade():
    assert check_cascade([0, 0.5, 1]) == [0.0, 0.5, 1.0]
    for bad in ([0, 0.5], [0.5, 0.25, 1], [0, 0, 1], [-0.1, 1], [0, 1.5], "all", [], [True, 1]):
        with pytest.raises(ScanbenchError, match="sanity.cascade"):
            check_cascade(bad)


@pytest.mark.parametrize("fixture", ["tiny_cnn", "tiny_vit"])
def test_cascading_randomises_from_the_top_down(fixture, request):
    model, _ = request.getfixturevalue(fixture)
    trained = shifted(model)
    rand = randomize_weights(trained, seed=1)
    groups = layer_groups(trained)
    names = [g.name for g in groups]
    steps = cascade_steps(groups, [0, 0.25, 0.5, 0.75, 1])
    assert [s[0] for s in steps] == ["0", "0.25", "0.5", "0.75", "1"]
    blocks = names[1:-1][::-1]   # top block first
    n = len(blocks)
    previous: set = set()
    for name, share, chosen in steps:
        expected = ["head", *blocks[:math.ceil(share * n - 1e-9)]] + (["stem"] if share == 1 else [])
        assert [g.name for g in chosen] == expected
        assert previous <= set(expected)      # cascading: what was randomised stays randomised
        previous = set(expected)
        m = partially_randomised(trained, rand, chosen)
        for key, v in m.state_dict().items():
            owner = next((g.name for g in groups if g.owns(key)), None)
            want = rand.state_dict()[key] if owner in expected else trained.state_dict()[key]
            assert torch.equal(v, want), (name, key)
    # the last depth is Table IV's randomised model, weight for weight
    full = partially_randomised(trained, rand, steps[-1][2])
    for (k, a), b in zip(full.state_dict().items(), rand.state_dict().values()):
        assert torch.equal(a, b), k


def test_independent_randomisation_changes_one_group(tiny_vit):
    model, _ = tiny_vit
    trained = shifted(model)
    rand = randomize_weights(trained, seed=1)
    groups = layer_groups(trained)
    m = partially_randomised(trained, rand, [groups[2]])
    changed = {g.name for g in groups for k, v in m.state_dict().items()
               if g.owns(k) and not torch.equal(v, trained.state_dict()[k])}
    assert changed == {groups[2].name}


class WeightBlind:
    """A map from the image alone (its brightness): it ignores the model, so it fails the check."""

    def __init__(self, model):
        self.model = model

    def explain(self, x, classes):
        return x.mean(1)


class InputGradient:
    """Vanilla gradient of the class logit: depends on every weight."""

    def __init__(self, model):
        self.model = model

    def explain(self, x, classes):
        x = x.clone().requires_grad_(True)
        logits = self.model(x)
        logits.gather(1, classes.view(-1, 1)).sum().backward()
        g = x.grad.abs().amax(1)
        lo = g.flatten(1).min(1).values.view(-1, 1, 1)
        hi = g.flatten(1).max(1).values.view(-1, 1, 1)
        return (g - lo) / (hi - lo).clamp_min(1e-12)


@pytest.mark.parametrize("fixture", ["tiny_cnn", "tiny_vit"])
def test_map_sanity_tells_a_weight_blind_map_from_a_weight_dependent_one(fixture, request):
    model, spec = request.getfixturevalue(fixture)
    trained = shifted(model)
    images = torch.rand(6, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    classes = trained(images).argmax(1)
    rand = randomize_weights(trained, seed=2)
    results, originals = {}, {}
    for name, cls in (("blind", WeightBlind), ("gradient", InputGradient)):
        def make(m, forward, cls=cls):
            return cls(m)
        original = make(trained, None).explain(images, classes).detach()
        originals[name] = original
        results[name] = map_sanity(make, trained, images, classes, original, rand, [0, 0.5, 1], size=32,
                                   n_resamples=100, seed=0, label_maps=original)
    blind, grad = results["blind"], results["gradient"]
    assert list(blind["cascading"]) == ["0", "0.5", "1"]
    assert list(blind["independent"]) == [g.name for g in layer_groups(trained)]
    for mode in ("cascading", "independent"):
        for rec in blind[mode].values():      # fails the check: similarity 1 whatever the weights
            for m in ("spearman", "ssim", "hog"):
                assert rec[m] == pytest.approx(1.0, abs=1e-6)
    full = grad["cascading"]["1"]
    assert full["randomised"][0] == "head" and full["randomised"][-1] == "stem"
    assert full["spearman"] < 0.6 and full["hog"] < 0.6, full
    assert grad["random_label"]["spearman"] == pytest.approx(1.0, abs=1e-6)   # label_maps = original here
    # the reference level: map i against map i-1 of the trained model
    expected = map_similarity(originals["gradient"], originals["gradient"].roll(1, 0), size=32)["spearman"]
    assert grad["other_image"]["spearman"] == pytest.approx(float(expected.mean()), abs=1e-9)
