"""Every baseline (all but SCAN, which needs a trained decoder) runs on the paper's architectures at random
init on one 224 px image and returns a 1 x 224 x 224 map in [0, 1]."""
import time

import pytest
import torch

from scanbench.backbones import get_backbone
from scanbench.explainers import family_methods, make_explainer

pytestmark = pytest.mark.slow   # full-size networks on a CPU: well over 20 s in total

BACKBONES = ["vit_base_patch16_224", "resnetv2_50", "efficientnetv2_b0", "vgg16", "convnext_small"]
# deit_base_patch16_224 and vit_base_patch16_224.dino are the same timm VisionTransformer as vit_base.
SMALL = {"lime": dict(num_samples=8, forward_batch_size=8), "rise": dict(n_masks=8, forward_batch_size=8)}


@pytest.mark.parametrize("name", BACKBONES)
def test_all_methods_run(name):
    spec = get_backbone(name)
    torch.manual_seed(0)
    model = spec.build()
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        cls = model(x).argmax(1)
    took = {}
    for method in family_methods(spec.family):
        if method == "scan":
            continue
        t0 = time.perf_counter()
        maps = make_explainer(method, model, spec, **SMALL.get(method, {})).explain(x, cls)
        took[method] = round(time.perf_counter() - t0, 2)
        assert maps.shape == (1, 224, 224), method
        assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1, method
    assert all(not m._forward_hooks for m in model.modules())
    print(name, took)
