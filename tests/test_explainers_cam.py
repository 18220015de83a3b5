"""CAM family (pytorch-grad-cam): per-image targets, raw maps at the layer grid, hand-computed checks."""
import pytest
import torch

from scanbench.errors import ScanbenchError
from scanbench.explainers import make_explainer
from scanbench.hooks import features_and_grads

CAMS = ["gradcam", "gradcam++", "xgradcam", "layercam"]
# Classes whose Grad-CAM is positive somewhere on the random-init tiny_cnn (for others the ReLU'd map is 0).
CLASSES = torch.tensor([8, 4, 3])


@pytest.fixture(scope="module")
def images():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))


def hand_cam(method, model, layer, x, c):
    """The CAM formulas for one image, on features/gradients taken by scanbench.hooks (not the library)."""
    _, f, g = features_and_grads(model, layer, x[None], torch.tensor([c]))
    f, g = f[0].double(), g[0].double()               # C x h x w
    if method == "gradcam":
        cam = (g.mean((1, 2))[:, None, None] * f).sum(0)
    elif method == "layercam":
        cam = (g.clamp_min(0) * f).sum(0)
    elif method == "xgradcam":
        w = (g * f).sum((1, 2)) / (f.sum((1, 2)) + 1e-7)
        cam = (w[:, None, None] * f).sum(0)
    elif method == "gradcam++":   # Chattopadhay et al. Eq. 19 with exp(S) gradients (as the library)
        a = g ** 2 / (2 * g ** 2 + f.sum((1, 2))[:, None, None] * g ** 3 + 1e-6)
        a = torch.where(g != 0, a, torch.zeros_like(a))
        w = (g.clamp_min(0) * a).sum((1, 2))
        cam = (w[:, None, None] * f).sum(0)
    return cam.clamp_min(0).float()


@pytest.mark.parametrize("method", CAMS)
def test_cnn_cams(tiny_cnn, images, method):
    model, spec = tiny_cnn
    ex = make_explainer(method, model, spec)
    raw = ex._explain(images, CLASSES)
    # raw map at the layer's grid: no library resize, no library min-max
    assert raw.shape == (3, spec.grid, spec.grid)
    refs = [hand_cam(method, model, spec.gradcam_layer, images[i], int(CLASSES[i])) for i in range(3)]
    assert all(r.max() > 0 for r in refs), "pick classes with a non-zero CAM on this random init"
    for i in range(3):
        assert torch.allclose(raw[i], refs[i], rtol=1e-3, atol=1e-5 * refs[i].max().item()), i
    maps = ex.explain(images, CLASSES)
    assert maps.shape == (3, 64, 64) and maps.min() >= 0 and maps.max() <= 1
    for i in range(3):
        assert maps[i].max() == 1  # every image explained, not only the first
    assert not torch.allclose(maps[0], maps[1]) and not torch.allclose(maps[1], maps[2])


def test_each_image_gets_its_own_class(tiny_cnn, images):
    model, spec = tiny_cnn
    ex = make_explainer("gradcam", model, spec)
    batched = ex._explain(images[:2], torch.tensor([8, 3]))
    assert torch.allclose(batched[1], ex._explain(images[1:2], torch.tensor([3]))[0], rtol=1e-4, atol=1e-7)
    assert not torch.allclose(batched[1], ex._explain(images[1:2], torch.tensor([8]))[0])


def test_vit_gradcam_token_reshape(tiny_vit):
    model, spec = tiny_vit
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    ex = make_explainer("gradcam", model, spec)
    raw = ex._explain(x, CLASSES)
    assert raw.shape == (3, spec.grid, spec.grid)
    _, f, g = features_and_grads(model, spec.gradcam_layer, x, CLASSES)   # B x T x D, CLS first
    f, g = f[:, 1:], g[:, 1:]
    ref = ((g.mean(1, keepdim=True) * f).sum(-1)).clamp_min(0).reshape(3, spec.grid, spec.grid)
    assert torch.allclose(raw, ref, rtol=1e-3, atol=1e-5 * ref.abs().max().item())
    maps = ex.explain(x, CLASSES)
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    assert not torch.allclose(maps[0], maps[1])


def test_no_hooks_left_and_no_grads(tiny_cnn, images):
    model, spec = tiny_cnn
    make_explainer("layercam", model, spec).explain(images[:1])
    assert all(not m._forward_hooks for m in model.modules())
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("method", ["gradcam++", "xgradcam", "layercam"])
def test_cam_family_not_for_vit(tiny_vit, method):
    model, spec = tiny_vit
    with pytest.raises(ScanbenchError, match="does not apply to vit"):
        make_explainer(method, model, spec)


def test_unknown_method(tiny_cnn):
    model, spec = tiny_cnn
    with pytest.raises(ScanbenchError, match="unknown method"):
        make_explainer("gradcam+++", model, spec)
