"""The hybrid ViT (vit_hybrid_lite0): timm's VisionTransformer over timm's HybridEmbed on a frozen
EfficientNet-Lite0 trunk. It is a ViT for every method that needs one (CLS token, timm Blocks and Attention, the
token grid the registry states), the sanity cascade randomises its trunk, its checkpoint round-trips with
weights_only=True, and its training touches the transformer only, the same way twice."""
from dataclasses import replace

import numpy as np
import pytest
import torch
from timm.layers import HybridEmbed
from timm.models.vision_transformer import Block

from scanbench.backbones import get_backbone, lite0_trunk, load_target, save_target
from scanbench.explainers import make_explainer
from scanbench.hooks import AttentionRecorder, features_and_grads
from scanbench.hybrid_train import (
    is_hybrid,
    pretrained_trunk_kwargs,
    train_hybrid,
    train_target,
    trunk_bypassed,
    trunk_features,
)
from scanbench.lr_schedule import lr_at
from scanbench.sanity import cascade_steps, layer_groups, partially_randomised, randomize_weights
from scanbench.vit_train import ViTTrainConfig, train_vit

KW = {"num_classes": 10, "width": 32, "heads": 2}


@pytest.fixture(scope="module")
def small():
    """(model, spec): the registry's hybrid at 64 px (4 x 4 tokens), width 32, random weights (fast)."""
    spec = replace(get_backbone("vit_hybrid_lite0"), input_size=64, grid=4)
    torch.manual_seed(0)
    return spec.build(**KW), spec


def test_registry_entry():
    spec = get_backbone("vit_hybrid_lite0")
    assert spec.family == "vit" and spec.trained_here and spec.grid * 16 == spec.input_size
    assert spec.resolve_layer("default") == spec.scan_layer == "net.blocks.1"
    assert spec.gradcam_layer == f"net.blocks.{spec.extra['depth'] - 1}.norm1"   # the last block's norm1
    depth = {a: int(p.split(".")[2]) for a, p in spec.layers.items()}
    assert depth["alt1"] < depth["default"] < depth["alt2"]


def test_builds_as_a_timm_vit_with_the_stated_grid():
    spec = get_backbone("vit_hybrid_lite0")
    model = spec.build(**KW)
    net = model.net
    assert isinstance(net.patch_embed, HybridEmbed) and is_hybrid(model)
    assert net.cls_token is not None and net.num_prefix_tokens == 1 and net.global_pool == "token"
    assert len(net.blocks) == spec.extra["depth"] and all(isinstance(b, Block) for b in net.blocks)
    assert tuple(net.patch_embed.grid_size) == (spec.grid, spec.grid)
    x = torch.rand(2, 3, spec.input_size, spec.input_size)
    logits, feats, grads = features_and_grads(model, spec.scan_layer, x)
    assert logits.shape == (2, 10)
    assert feats.shape == grads.shape == (2, spec.grid ** 2 + 1, 32)      # tokens + CLS
    # the trunk is frozen: no gradient is asked of its weights
    assert not any(p.requires_grad for p in net.patch_embed.backbone.parameters())


def test_attention_recorder_sees_every_block(small):
    model, spec = small
    x = torch.rand(2, 3, spec.input_size, spec.input_size)
    with AttentionRecorder(model) as rec, torch.no_grad():
        model(x)
    t = spec.grid ** 2 + 1
    assert len(rec.attn) == spec.extra["depth"]
    assert all(a.shape == (2, KW["heads"], t, t) for a in rec.attn)
    assert torch.allclose(rec.attn[0].sum(-1), torch.ones(2, KW["heads"], t), atol=1e-5)


@pytest.mark.parametrize("method", ["gradcam", "raw_attention", "rollout", "lrp", "partial_lrp",
                                    "transformer_attribution", "ag_cam"])
def test_vit_methods_give_maps_on_the_token_grid(small, method):
    model, spec = small
    x = torch.rand(2, 3, spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(1))
    ex = make_explainer(method, model, spec)
    raw = ex._explain(x, torch.tensor([1, 2]))
    assert raw.shape == (2, spec.grid, spec.grid)
    maps = ex.explain(x, torch.tensor([1, 2]))
    assert maps.shape == (2, spec.input_size, spec.input_size)


def test_layer_groups_cover_every_weight_and_the_trunk_is_stem(small):
    model, _ = small
    groups = layer_groups(model)
    names = [g.name for g in groups]
    assert names[0] == "stem" and names[-1] == "head"
    assert names[1:-1] == [f"blocks.{i}" for i in range(len(model.net.blocks))]
    keys = [k for k in model.state_dict() if k not in ("mean", "std")]
    for k in keys:
        owners = [g.name for g in groups if g.owns(k)]
        assert len(owners) == 1, f"{k} belongs to {owners}"
    stem = groups[0]
    trunk_keys = [k for k in keys if k.startswith("net.patch_embed.backbone.")]
    assert trunk_keys and all(stem.owns(k) for k in trunk_keys)
    assert stem.owns("net.cls_token") and stem.owns("net.pos_embed") and stem.owns("net.patch_embed.proj.weight")
    # the cascade's last step (share 1) randomises the trunk too; the steps before it leave it alone
    rand = randomize_weights(model, seed=3)
    steps = cascade_steps(groups, [0, 0.5, 1])
    for name, share, chosen in steps:
        m = partially_randomised(model, rand, chosen)
        conv = "net.patch_embed.backbone.conv_stem.weight"
        changed = not torch.equal(m.state_dict()[conv], model.state_dict()[conv])
        assert changed == (share == 1), name
    full = partially_randomised(model, rand, steps[-1][2])
    for k in keys:
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(full.state_dict()[k], rand.state_dict()[k]), k


def test_pretrained_trunk_is_lite0_to_blocks4():
    import timm

    from scanbench.backbones import load_lite0_weights

    full = timm.create_model("tf_efficientnet_lite0")
    load_lite0_weights(full)
    full.eval()
    trunk = lite0_trunk(4, pretrained=True)
    assert len(trunk.blocks) == 5
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = full.forward_intermediates(x, indices=[3], intermediates_only=True)[0]   # stage 3: blocks.4
        got = trunk(x)
    assert got.shape == (1, 112, 4, 4) and torch.allclose(got, want, atol=1e-5)
    # the registry's hybrid built for training carries exactly these weights
    spec = replace(get_backbone("vit_hybrid_lite0"), input_size=64, grid=4)
    kwargs = pretrained_trunk_kwargs(spec, {"targets": {"weights": {}}})
    assert kwargs == {"pretrained": True, "weights": None}
    model = spec.build(**KW, **kwargs)
    for k, v in trunk.state_dict().items():
        assert torch.equal(model.net.patch_embed.backbone.state_dict()[k], v), k
    assert pretrained_trunk_kwargs(get_backbone("vit_tiny_convstem"), {}) == {}


def test_checkpoint_roundtrip_weights_only(tmp_path):
    real = get_backbone("vit_hybrid_lite0")
    model = real.build(**KW)
    save_target(tmp_path / "m.pt", real, model, KW)
    state = torch.load(tmp_path / "m.pt", weights_only=True)
    assert state["backbone"] == "vit_hybrid_lite0"
    loaded = load_target("vit_hybrid_lite0", tmp_path / "m.pt")
    x = torch.rand(2, 3, real.input_size, real.input_size)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x), atol=1e-6)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k


def test_trunk_bypass_gives_the_same_logits(small):
    model, spec = small
    imgs = (torch.rand(3, 3, spec.input_size, spec.input_size) * 255).round().to(torch.uint8).numpy()
    feats = trunk_features(model, imgs, batch_size=2)
    assert feats.dtype == np.float16 and feats.shape == (3, 112, spec.grid, spec.grid)
    with torch.no_grad():
        direct = model(torch.from_numpy(imgs).float() / 255)
        with trunk_bypassed(model) as net:
            cached = net(torch.from_numpy(feats).float())
    assert model.net.patch_embed.backbone is not None and not isinstance(model.net.patch_embed.backbone,
                                                                         torch.nn.Identity)
    assert torch.allclose(direct, cached, atol=2e-2)   # float16 features


def test_training_touches_the_transformer_only_and_repeats(small):
    _, spec = small
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (24, 3, spec.input_size, spec.input_size), dtype=np.uint8)
    labels = rng.integers(0, 10, 24)
    teacher = rng.normal(size=(24, 10)).astype(np.float32)
    cfg = ViTTrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup_epochs=1, seed=0)
    runs = []
    for logged in (None, []):   # the second run also logs a row per step: the same weights
        torch.manual_seed(0)
        model = spec.build(**KW)
        assert train_target(model) is train_hybrid
        before = {k: v.clone() for k, v in model.state_dict().items()}
        curves = train_hybrid(model, imgs, labels, teacher, imgs[:8], labels[:8], cfg, step_curves=logged)
        assert [c["epoch"] for c in curves] == [1, 2] and [c["step"] for c in curves] == [3, 6]
        assert not model.training
        after = model.state_dict()
        for k, v in before.items():
            same = torch.equal(after[k], v)
            assert same == (k.startswith("net.patch_embed.backbone.") or k in ("mean", "std")), k
        runs.append(after)
    for k, v in runs[0].items():
        assert torch.equal(runs[1][k], v), k
    assert [(r["step"], r["epoch"]) for r in logged] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2), (6, 2)]
    assert all(np.isfinite(r["loss"]) and 0 <= r["train_top1"] <= 100 for r in logged)
    # the shared schedule with the configured base rate: a warm-up epoch of 3 steps, then a cosine to 0
    assert [r["lr"] for r in logged] == pytest.approx([lr_at(s, 6, cfg.lr, "cosine", 3, progress_first=True)
                                                       for s in range(6)], rel=1e-12)
    assert max(r["lr"] for r in logged) == pytest.approx(cfg.lr)
    # images at another size than the model's: one line naming the fix
    from scanbench.errors import ScanbenchError

    with pytest.raises(ScanbenchError, match="teacher stage"):
        train_hybrid(model, imgs[:, :, :32, :32], labels, teacher, imgs[:8], labels[:8], cfg)


def test_vit_trained_from_pixels_keeps_its_trainer(tiny_vit):
    model, _ = tiny_vit
    assert not is_hybrid(model) and train_target(model) is train_vit


def test_teacher_caches_at_the_trained_backbones_input_size():
    from scanbench.errors import ScanbenchError
    from scanbench.teacher import student_input_size

    assert student_input_size(["vit_hybrid_lite0"]) == get_backbone("vit_hybrid_lite0").input_size
    assert student_input_size(["vit_tiny_convstem"]) == 64
    with pytest.raises(ScanbenchError, match="different input sizes"):
        student_input_size(["vit_tiny_convstem", "vit_hybrid_lite0"])


def test_vit_step_curves_change_nothing(tiny_vit):
    """train_vit's per-step rows are read from what the loop computes anyway: the same weights with or without."""
    _, spec = tiny_vit
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (12, 3, spec.input_size, spec.input_size), dtype=np.uint8)
    labels, teacher = rng.integers(0, 10, 12), rng.normal(size=(12, 10)).astype(np.float32)
    cfg = ViTTrainConfig(epochs=2, batch_size=8, lr=1e-3, warmup_epochs=1, seed=0)
    runs, rows = [], []
    for logged in (None, rows):
        torch.manual_seed(0)
        model = spec.build(num_classes=10)
        curves = train_vit(model, imgs, labels, teacher, imgs[:4], labels[:4], cfg, step_curves=logged)
        runs.append(model.state_dict())
    assert [c["step"] for c in curves] == [2, 4] and [r["step"] for r in rows] == [1, 2, 3, 4]
    assert all(torch.equal(runs[1][k], v) for k, v in runs[0].items())
