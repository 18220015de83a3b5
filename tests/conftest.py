"""Shared fixtures: tiny random-init models (fast), a few real Imagenette images, the data root, an unreachable
model hub."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import scanbench  # noqa: F401  (sets OMP_WAIT_POLICY before torch loads OpenMP)

# isort: split
import torch

torch.set_num_threads(1)  # tests run beside other work on a 2-core machine; keep them lean

REPO = Path(__file__).resolve().parents[1]
# Where the tests find Imagenette (the product reads data.root only; this variable is the tests' own).
DATA_ROOT = Path(os.environ.get("SCANBENCH_TEST_DATA", REPO.parent / "shared" / "data" / "imagenette"))


@pytest.fixture(scope="session")
def data_root() -> Path:
    if not DATA_ROOT.is_dir():
        pytest.skip(f"Imagenette not found at {DATA_ROOT}")
    return DATA_ROOT


@pytest.fixture(scope="session")
def tiny_vit():
    """(model, spec): a 2-block timm ViT (width 32, 8x8 tokens at 32 px... via the conv stem), 10 classes."""
    from dataclasses import replace

    from scanbench.backbones import get_backbone

    base = get_backbone("vit_tiny_convstem")
    spec = replace(base, input_size=32, grid=4, scan_layer="net.blocks.1", gradcam_layer="net.blocks.2.norm1",
                   layers={"default": "net.blocks.1", "alt1": "net.blocks.0", "alt2": "net.blocks.2"},
                   extra={"width": 32, "depth": 3, "heads": 2})
    torch.manual_seed(0)
    model = spec.build(num_classes=10)
    return model.eval(), spec


@pytest.fixture(scope="session")
def tiny_cnn():
    """(model, spec): a small timm CNN (resnet10t-like) at 32 px with a 4x4 last grid... random init."""
    import timm

    from scanbench.backbones import BackboneSpec

    def factory(spec, pretrained=False, **kw):
        return timm.create_model("resnet10t", num_classes=10, pretrained=False)

    spec = BackboneSpec(name="tiny_cnn", family="cnn", input_size=64, grid=2, scan_layer="net.layer4",
                        gradcam_layer="net.layer4", layers={"default": "net.layer4", "alt1": "net.layer3",
                                                            "alt2": "net.layer2"}, factory=factory)
    torch.manual_seed(0)
    return spec.build(), spec


@pytest.fixture
def no_hub(tmp_path, monkeypatch):
    """An unreachable hub (a closed local port: refused at once, whatever this machine's network) and empty caches."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "torchhub"))
    return tmp_path / "hf"
