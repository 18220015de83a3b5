"""The paper's backbones (ViT-B/16, DeiT-B, DINO ViT-B/16, ResNet50V2, VGG16, ConvNeXt-S,
EfficientNetV2-B0) build with timm at their real size (random weights: no download), with the right head, grid,
SCAN and Grad-CAM layers and normalisation, and one explainer of each family, plus SCAN with an untrained decoder,
runs on them through a fitted-size head (the model the `head` stage makes)."""
import pytest
import torch

from scanbench.backbones import get_backbone
from scanbench.explainers import make_explainer

pytestmark = pytest.mark.slow   # seven full-size networks on a CPU

PAPER = {   # name: (timm name, family, grid, penultimate width)
    "vit_base_patch16_224": ("vit_base_patch16_224", "vit", 14, 768),
    "deit_base_patch16_224": ("deit_base_patch16_224", "vit", 14, 768),
    "vit_base_patch16_224.dino": ("vit_base_patch16_224.dino", "vit", 14, 768),
    "resnetv2_50": ("resnetv2_50", "cnn", 7, 2048),
    "vgg16": ("vgg16", "cnn", 14, 4096),
    "convnext_small": ("convnext_small", "cnn", 7, 768),
    "efficientnetv2_b0": ("tf_efficientnetv2_b0", "cnn", 7, 1280),
}
N_CLASSES = 5
ONE_PER_FAMILY = {"cnn": "gradcam", "vit": "rollout"}


@pytest.mark.parametrize("name", list(PAPER))
def test_registry_matches_timm(name):
    """Head, normalisation and parameter count from timm itself (on the meta device: no weights, no time)."""
    import timm
    from timm.models import get_pretrained_cfg

    timm_name, family, _, _ = PAPER[name]
    spec = get_backbone(name)
    assert (spec.timm_name, spec.family, spec.input_size) == (timm_name, family, 224)
    cfg = get_pretrained_cfg(timm_name)
    assert spec.mean == tuple(cfg.mean) and spec.std == tuple(cfg.std)
    with torch.device("meta"):
        net = timm.create_model(timm_name, pretrained=False)
        out = net(torch.empty(1, 3, 224, 224))
    # DINO has no classifier: its output is 768 features, which must never be read as 1000 class logits
    assert spec.imagenet_head == (net.num_classes == 1000) == (name != "vit_base_patch16_224.dino")
    assert out.shape == (1, 1000 if spec.imagenet_head else 768)
    n_params = sum(p.numel() for p in net.parameters()) / 1e6
    assert {"vit_base_patch16_224": 86.6, "deit_base_patch16_224": 86.6, "vit_base_patch16_224.dino": 85.8,
            "resnetv2_50": 25.5, "vgg16": 138.4, "convnext_small": 50.2,
            "efficientnetv2_b0": 7.1}[name] == pytest.approx(n_params, abs=0.1)


@pytest.mark.parametrize("name", list(PAPER))
def test_builds_at_real_size_and_explains(name, tmp_path):
    from scanbench.scan.decoder import build_decoder
    from scanbench.scan.train import save_decoder

    _, family, grid, width = PAPER[name]
    spec = get_backbone(name)
    assert spec.grid == grid
    torch.manual_seed(0)
    model = spec.build(head_classes=N_CLASSES)          # random weights, real size; the head the `head` stage fits
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    seen = {}
    paths = {spec.scan_layer, spec.gradcam_layer, spec.last_block, *spec.layers.values()}

    def record(path):
        def hook(module, inputs, output):
            seen[path] = tuple(output.shape)     # returns None: the output passes on unchanged
        return hook

    hooks = [model.get_submodule(p).register_forward_hook(record(p)) for p in paths]
    with torch.no_grad():
        feats = model.features(x)
        logits = model(x)
    for h in hooks:
        h.remove()
    assert feats.shape == (1, width) and logits.shape == (1, N_CLASSES)
    assert set(seen) == paths                            # every layer runs in the forward pass
    from scanbench.head import trainable_from

    tuned = trainable_from(model, spec.last_block)       # head.kind last_block: that block onward, then the head
    assert tuned[0].startswith(spec.last_block + ".") and tuned[-1] == "head.bias"
    shape = seen[spec.scan_layer]
    if family == "vit":
        assert shape[1] == grid * grid + 1               # patch tokens + CLS at the SCAN layer
    else:
        assert tuple(shape[-2:]) == (grid, grid)
    cls = logits.argmax(1)
    maps = make_explainer(ONE_PER_FAMILY[family], model, spec).explain(x, cls)
    assert maps.shape == (1, 224, 224) and torch.isfinite(maps).all() and 0 <= maps.min() <= maps.max() <= 1
    # SCAN with an untrained small decoder on the SCAN layer's real feature shape
    feat_shape = shape[1:]
    params = {"scan": {"widths": {"cnn": [16, 8, 8, 8], "vit": [16, 8, 8, 8]}, "vit_blocks": 1, "vit_heads": 2,
                       "out_size": None}}
    save_decoder(tmp_path / "d.pt", build_decoder(spec, tuple(feat_shape), params),
                 {"backbone": spec.name, "layer": spec.scan_layer, "alpha": 4.0})
    maps = make_explainer("scan", model, spec, decoder_path=str(tmp_path / "d.pt"), p=95).explain(x, cls)
    assert maps.shape == (1, 224, 224) and torch.isfinite(maps).all()
    assert all(not m._forward_hooks for m in model.modules())
