"""The ONNX engine agrees with PyTorch; the feature store holds F and dlogit/dF of the right shapes."""
import numpy as np
import pytest
import torch

from scanbench.data import build_manifest
from scanbench.engine import ForwardEngine, export_onnx
from scanbench.errors import ScanbenchError
from scanbench.feature_extraction import extract_features
from scanbench.features import load_features
from scanbench.hooks import features_and_grads


def test_onnx_matches_torch(tmp_path, tiny_vit, tiny_cnn):
    for model, spec in (tiny_vit, tiny_cnn):
        path = export_onnx(model, tmp_path / f"{spec.name}.onnx", spec.input_size)
        x = torch.rand(5, 3, spec.input_size, spec.input_size)
        onnx_logits = ForwardEngine(model, "onnx", path, batch_size=2)(x)
        torch_logits = ForwardEngine(model, "torch", batch_size=3)(x)
        assert onnx_logits.shape == (5, 10)
        assert torch.allclose(onnx_logits, torch_logits, atol=1e-4)


def test_engine_errors(tmp_path, tiny_cnn):
    with pytest.raises(ScanbenchError, match="evaluate.engine"):
        ForwardEngine(tiny_cnn[0], "tensorrt")
    with pytest.raises(ScanbenchError, match="not found"):
        ForwardEngine(tiny_cnn[0], "onnx", tmp_path / "none.onnx")


def test_gradient_is_dlogit_dfeature(tiny_cnn):
    """G from the hook equals a finite-difference-free direct autograd of the chosen logit."""
    model, spec = tiny_cnn
    x = torch.rand(3, 3, 64, 64)
    classes = torch.tensor([1, 4, 7])
    logits, F, G = features_and_grads(model, spec.scan_layer, x, classes)
    assert F.shape == G.shape == (3, 512, 2, 2)
    # per image, alone: the batch sum must separate
    for i in range(3):
        _, Fi, Gi = features_and_grads(model, spec.scan_layer, x[i:i + 1], classes[i:i + 1])
        assert torch.allclose(Gi[0], G[i], atol=1e-6)
        assert torch.allclose(Fi[0], F[i], atol=1e-6)


def test_feature_store(tmp_path, data_root, tiny_vit):
    model, spec = tiny_vit
    df, _ = build_manifest(data_root, splits=("val",), limit_per_class=1, check_images=False)
    out = extract_features(model, spec.scan_layer, data_root, df["path"].tolist(), df["label"].tolist(),
                           spec.input_size, tmp_path / "feats", batch_size=4)
    fs = load_features(out)
    assert len(fs) == 10
    assert fs.F.dtype == np.float16 and fs.F.shape == (10, spec.grid ** 2 + 1, 32)
    assert fs.G.shape == fs.F.shape and fs.images.shape == (10, 3, 32, 32)
    assert isinstance(fs.F, np.memmap)
    assert fs.meta["labels"] == df["label"].tolist()
    assert not (tmp_path / "feats.partial").exists()
    with pytest.raises(ScanbenchError, match="no feature set"):
        load_features(tmp_path / "nothing")


def test_feature_layers_follow_the_params():
    """Main layers always; the layer ablation's layers only where that backbone is ablated; no repeats."""
    from scanbench.features import feature_layers

    params = {"scan": {"layers": ["default"]},
              "ablation": {"backbones": ["vit_tiny_convstem"], "layers": ["default", "alt1", "alt2"]}}
    assert feature_layers("vit_tiny_convstem", params) == ["default", "alt1", "alt2"]
    assert feature_layers("effnet_lite0", params) == ["default"]
    params["scan"]["layers"] = ["alt2"]
    assert feature_layers("vit_tiny_convstem", params) == ["alt2", "default", "alt1"]
