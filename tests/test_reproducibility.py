"""Same inputs, same bytes, same numbers on any x86 CPU.

- The package pins the instruction set PyTorch, oneDNN and MKL dispatch to (AVX2), before torch loads.
- Equal checkpoints and map archives are equal files (no temp name or clock inside the archive).
- The library versions whose internals the code hooks are the pinned ones, and the hooked internals exist.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

import scanbench
from scanbench.io import save_npz, save_torch

REPO = Path(__file__).resolve().parents[1]


def _has_avx2() -> bool:
    try:
        return "avx2" in Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False


def _capability(env_extra: dict[str, str]) -> str:
    env = {k: v for k, v in os.environ.items() if k not in scanbench.ISA_PINS and k != "SCANBENCH_NATIVE_ISA"}
    env.update(env_extra)
    code = "import scanbench, torch; print(torch.backends.cpu.get_cpu_capability())"
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.mark.skipif(not _has_avx2(), reason="the pins target x86 CPUs with AVX2")
def test_importing_scanbench_pins_the_isa():
    assert _capability({}) == "AVX2"
    assert os.environ["ONEDNN_MAX_CPU_ISA"] == "AVX2" and os.environ["MKL_ENABLE_INSTRUCTIONS"] == "AVX2"
    assert os.environ["MKL_CBWR"] == "AVX2,STRICT"   # MKL: the same code path on Intel and AMD CPUs


@pytest.mark.skipif("avx512f" not in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""),
                    reason="needs an AVX-512 CPU to see the pin lifted")
def test_native_isa_lifts_the_pins():
    assert _capability({"SCANBENCH_NATIVE_ISA": "1"}) == "AVX512"


def test_checkpoint_bytes_depend_on_contents_only(tmp_path):
    state = {"w": torch.arange(12.0).view(3, 4), "meta": {"layer": "net.blocks.2"}}
    save_torch(tmp_path / "a.pt", state)
    save_torch(tmp_path / "other_name.pt", state)
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "other_name.pt").read_bytes()
    names = zipfile.ZipFile(tmp_path / "a.pt").namelist()
    assert all(n.startswith("archive/") for n in names), names    # no temp file name inside
    loaded = torch.load(tmp_path / "a.pt", weights_only=True)
    assert torch.equal(loaded["w"], state["w"])
    save_torch(tmp_path / "b.pt", {**state, "w": state["w"] + 1})
    assert (tmp_path / "b.pt").read_bytes() != (tmp_path / "a.pt").read_bytes()


def test_npz_bytes_do_not_depend_on_the_clock(tmp_path, monkeypatch):
    arrays = {"maps": np.linspace(0, 1, 32, dtype=np.float16).reshape(2, 4, 4), "indices": np.array([3, 7])}
    save_npz(tmp_path / "a.npz", **arrays)
    import time
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 86400 * 400)   # a year later: np.savez would differ
    save_npz(tmp_path / "b.npz", **arrays)
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    with np.load(tmp_path / "a.npz") as z:
        assert set(z.files) == {"maps", "indices"}
        np.testing.assert_array_equal(z["maps"], arrays["maps"])


def _pinned(requirement_prefix: str) -> str:
    import re

    found = re.search(rf'"{re.escape(requirement_prefix)}([^"]+)"', (REPO / "pyproject.toml").read_text())
    assert found, f"pyproject.toml must pin {requirement_prefix.rstrip('=')} with =="
    return found.group(1)


@pytest.mark.parametrize("package", ["timm", "grad-cam", "lime", "torch", "onnxruntime"])
def test_hooked_libraries_are_pinned_and_installed_at_that_version(package):
    from importlib.metadata import version

    assert version(package) == _pinned(f"{package}=="), f"{package} installed differs from the pin: reinstall"


def test_hooked_timm_internals_exist():
    """The attention hooks and the CAM wrapper reach into these; a timm release without them must fail here."""
    from timm.layers.attention import Attention
    from timm.models.vision_transformer import VisionTransformer

    attn = Attention(dim=8, num_heads=2)
    missing = [a for a in ("fused_attn", "attn_drop", "q_norm", "k_norm", "scale", "qkv") if not hasattr(attn, a)]
    assert not missing, f"timm Attention lacks {missing}: scanbench.hooks needs them (check the timm pin)"
    vit = VisionTransformer(img_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=2, num_classes=3)
    assert hasattr(vit, "num_prefix_tokens") and hasattr(vit, "blocks")


def test_hooked_grad_cam_internals_exist():
    import pytorch_grad_cam

    for name in ("GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM"):
        cls = getattr(pytorch_grad_cam, name)
        assert hasattr(cls, "get_cam_image"), f"pytorch_grad_cam.{name} lacks get_cam_image (check the pin)"
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    cam = pytorch_grad_cam.GradCAM(model=model, target_layers=[model[0]])
    try:
        assert all(hasattr(cam.activations_and_grads, a) for a in ("activations", "gradients", "release"))
    finally:
        cam.activations_and_grads.release()
