"""The `head` stage. A backbone without an ImageNet classifier (DINO: timm num_classes=0) or data
whose classes are not ImageNet's gets a linear probe on its penultimate features; labels are the data's class
indices; backbone + head is the target model of every later stage; bad input is one line."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from scanbench.backbones import BackboneSpec, get_backbone, load_target, save_target
from scanbench.config import check_head_params, validate_params
from scanbench.errors import ScanbenchError
from scanbench.head import (
    fine_tune_last_block,
    fit_linear_probe,
    head_reason,
    heads_needed,
    penultimate_features,
    probe_top1,
    trainable_from,
)

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
# the data's own classes: no folder is an ImageNet wnid (as CUB-200, Food-101 or a user's folders)
COLOURS = {"apples": (200, 30, 30), "frogs": (30, 180, 40), "lakes": (30, 60, 210)}


# ------------------------------------------------------------------------------------- when a head is needed

def test_dino_has_no_imagenet_head_read_from_timm():
    from timm.models import get_pretrained_cfg

    dino = get_backbone("vit_base_patch16_224.dino")
    assert get_pretrained_cfg(dino.timm_name).num_classes == 0 and not dino.imagenet_head
    assert "num_classes=0" in head_reason(dino, [0, 217])          # ImageNet classes: still no classifier
    # not a hand list: any timm name whose pretrained_cfg has no classifier is detected the same way
    other = replace(get_backbone("deit_base_patch16_224"), name="x", timm_name="vit_small_patch16_224.dino")
    assert not other.imagenet_head and head_reason(other, [0, 1]) is not None
    for name in ("vit_base_patch16_224", "deit_base_patch16_224", "resnetv2_50", "vgg16", "convnext_small",
                 "efficientnetv2_b0", "effnet_lite0"):
        spec = get_backbone(name)
        assert spec.imagenet_head, name
        assert head_reason(spec, [0, 217, 482]) is None, name
        assert "2 of the data's 3 classes" in head_reason(spec, [0, -1, -1]), name


def test_a_backbone_trained_here_needs_no_head_but_its_teacher_may():
    vit = get_backbone("vit_tiny_convstem")
    assert head_reason(vit, [-1, -1]) is None                      # trained on the data's own classes
    params = {"backbones": ["vit_tiny_convstem"], "targets": {"vit": {"teacher": "effnet_lite0"}}}
    assert list(heads_needed(params, [-1, -1])) == ["effnet_lite0"]  # its soft labels must be over those classes
    assert heads_needed(params, [0, 217]) == {}
    params["backbones"] = ["effnet_lite0", "vit_base_patch16_224.dino"]
    assert list(heads_needed(params, [0, 217])) == ["vit_base_patch16_224.dino"]


# ------------------------------------------------------------------------------------- the probe

def _blobs(n_per_class: int, k: int, dim: int, seed: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (k, dim)) * 3
    x = np.concatenate([centres[c] + rng.normal(0, 1, (n_per_class, dim)) for c in range(k)])
    y = np.repeat(np.arange(k), n_per_class)
    return (x * 40 + 500).astype(np.float16), y     # far from standardised, as raw network features can be


def test_linear_probe_fits_separable_features_and_takes_raw_features():
    x, y = _blobs(40, 4, 64, seed=0)
    xv, yv = _blobs(20, 4, 64, seed=0)   # same centres (same seed), fresh noise below
    xv = (xv.astype(np.float32) + np.random.default_rng(1).normal(0, 40, xv.shape)).astype(np.float16)
    layer, curves = fit_linear_probe(x, y, 4, epochs=20, lr=0.01, weight_decay=1e-4, batch_size=32, seed=0)
    assert len(curves) == 20 and curves[-1]["train_loss"] < curves[0]["train_loss"]
    assert probe_top1(layer, x, y) == 100.0
    assert probe_top1(layer, xv, yv) >= 95.0
    # chance on shuffled labels: the probe learns the features' classes, not a constant
    shuffled, _ = fit_linear_probe(x, np.random.default_rng(2).permutation(y), 4, epochs=20, lr=0.01,
                                   weight_decay=1e-4, batch_size=32, seed=0)
    assert probe_top1(shuffled, xv, yv) < 60.0
    # seeded: the same fit twice gives the same layer
    again, _ = fit_linear_probe(x, y, 4, epochs=20, lr=0.01, weight_decay=1e-4, batch_size=32, seed=0)
    assert torch.allclose(again.weight, layer.weight, atol=1e-6) and torch.allclose(again.bias, layer.bias, atol=1e-5)


def test_probe_refuses_labels_outside_the_classes():
    x, y = _blobs(5, 2, 8, seed=0)
    with pytest.raises(ScanbenchError, match=r"train labels must lie in 0\.\.1"):
        fit_linear_probe(x, y + 1, 2, epochs=1, lr=0.01, weight_decay=0, batch_size=4, seed=0)


def _tiny_spec(monkeypatch) -> BackboneSpec:
    import timm

    from scanbench import backbones

    def factory(spec, pretrained=False, **kw):
        return timm.create_model("resnet10t", num_classes=1000, pretrained=False)

    spec = BackboneSpec(name="tiny_head_cnn", family="cnn", input_size=64, grid=2, scan_layer="net.layer4",
                        gradcam_layer="net.layer4", layers={"default": "net.layer4"}, factory=factory,
                        timm_name="resnet10t")
    monkeypatch.setitem(backbones._REGISTRY, spec.name, spec)
    return spec


def test_backbone_plus_head_is_the_target_model_and_round_trips(monkeypatch, tmp_path):
    from scanbench.explainers import make_explainer

    spec = _tiny_spec(monkeypatch)
    torch.manual_seed(0)
    model = spec.build(head_classes=3)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    feats = model.features(x)
    assert feats.shape == (2, 512) and model(x).shape == (2, 3)
    assert torch.allclose(model(x), model.head(feats), atol=1e-5)
    save_target(tmp_path / "m.pt", spec, model, {"head_classes": 3})
    loaded = load_target(spec.name, tmp_path / "m.pt")
    assert torch.allclose(loaded(x), model(x), atol=1e-5)
    maps = make_explainer("gradcam", loaded, spec).explain(x, torch.tensor([0, 2]))   # gradients through the head
    assert maps.shape == (2, 64, 64) and torch.isfinite(maps).all() and maps.max() > 0
    # without a head the state dict (and so a checkpoint's bytes) is what it was before the head stage existed
    plain = spec.build(class_indices=[0, 5, 9])
    assert not any(k.startswith("head.") for k in plain.state_dict()) and plain.head is None
    assert penultimate_features(plain, x).dtype == np.float16


def test_last_block_fine_tunes_that_block_onward_and_nothing_before(monkeypatch):
    spec = _tiny_spec(monkeypatch)
    torch.manual_seed(0)
    model = spec.build(head_classes=3)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = trainable_from(model, "net.layer4")
    assert names[0].startswith("net.layer4.") and names[-2:] == ["head.weight", "head.bias"]
    gen = torch.Generator().manual_seed(0)
    colours = torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.7, 0.2], [0.1, 0.2, 0.8]])
    labels = np.repeat(np.arange(3), 8)
    images = (colours[labels].view(-1, 3, 1, 1) + 0.1 * torch.randn(len(labels), 3, 64, 64, generator=gen)).clamp(0, 1)
    tuned, curves = fine_tune_last_block(model, "net.layer4", lambda rows: images[rows], labels, epochs=6, lr=3e-3,
                                         weight_decay=0.0, batch_size=8, seed=0)
    assert tuned == names and curves[-1]["train_loss"] < curves[0]["train_loss"]
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= set(names)                     # nothing before the block moved (BN stats neither)
    assert {"head.weight", "net.layer4.0.conv1.weight"} <= changed
    assert all(q.requires_grad for q in model.parameters()) and not model.training
    with pytest.raises(ScanbenchError, match="no parameters under 'net.layer9'"):
        trainable_from(model, "net.layer9")


# ------------------------------------------------------------------------------------- params

@pytest.mark.parametrize("mutate, match", [
    (lambda h: h.update(kind="svm"), r"head.kind = 'svm': use linear_probe .* or last_block"),
    (lambda h: h.update(last_block_epochs=0), r"head.last_block_epochs must be an integer >= 1"),
    (lambda h: h.update(last_block_lr=0.0), r"head.last_block_lr must be a number > 0"),
    (lambda h: h.update(epochs=0), r"head.epochs must be an integer >= 1 \(got 0\)"),
    (lambda h: h.update(batch_size=2.5), "head.batch_size must be an integer"),
    (lambda h: h.update(lr=0), r"head.lr must be a number > 0"),
    (lambda h: h.update(weight_decay=-1), r"head.weight_decay must be a number >= 0"),
    (lambda h: h.update(n_train=0), "head.n_train must be an integer >= 1 or null"),
])
def test_bad_head_params_are_one_line(mutate, match):
    params = copy.deepcopy(SMOKE)
    check_head_params(params)
    mutate(params["head"])
    with pytest.raises(ScanbenchError, match=match) as err:
        validate_params(params)
    assert "\n" not in str(err.value)


def test_weights_file_missing_or_wrong_is_one_line(tmp_path):
    spec = get_backbone("effnet_lite0")
    with pytest.raises(ScanbenchError, match=r"weights file .*nope.pt \(targets.weights.effnet_lite0\) not found"):
        spec.build(pretrained=True, weights=str(tmp_path / "nope.pt"))
    resnet = get_backbone("resnetv2_50")
    torch.save({"state_dict": {"stem.conv.weight": torch.zeros(1)}}, tmp_path / "bad.pt")
    with pytest.raises(ScanbenchError, match=r"bad.pt does not fit resnetv2_50 \(missing: .*targets.weights."
                                             r"resnetv2_50") as err:
        resnet.build(pretrained=True, weights=str(tmp_path / "bad.pt"))
    assert "\n" not in str(err.value)


def test_a_weights_file_replaces_the_hub(tmp_path, monkeypatch):
    """targets.weights.<name>: the file's tensors, and no hub look-up at all (offline-safe)."""
    from scanbench import backbones

    monkeypatch.setattr(backbones, "_hub_reachable", lambda *a, **k: pytest.fail("no hub look-up"))
    spec = get_backbone("efficientnetv2_b0")
    torch.manual_seed(1)
    ref = spec.build().net
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(tmp_path / "w.safetensors"))
    model = spec.build(pretrained=True, weights=str(tmp_path / "w.safetensors"))
    for k, v in ref.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), k


# ------------------------------------------------------------------------------------- the stage, end to end

def _colour_tree(root: Path, n_train: int = 6, n_val: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("val", n_val)):
        for cls, rgb in COLOURS.items():
            for k in range(n):
                img = np.clip(np.array(rgb) + rng.normal(0, 25, (48, 48, 3)), 0, 255).astype(np.uint8)
                (root / split / cls).mkdir(parents=True, exist_ok=True)
                Image.fromarray(img).save(root / split / cls / f"{k}.png")
    return root


def _params(tmp_path: Path, root: Path, mutate=lambda p: None) -> None:
    p = copy.deepcopy(SMOKE)
    p["data"].update(root=str(root), limit_per_class=None)
    p["backbones"] = ["effnet_lite0"]
    p["families"] = {"cnn": ["effnet_lite0"], "vit": []}
    p["ablation"]["backbones"] = []
    p["explain"]["n_images"] = 4
    p["features"]["n_holdout"] = 2
    p["sanity"]["n_images"] = p["scaling"]["n_images"] = 4
    p["timing"]["n_images"] = 4
    mutate(p)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(p))


def _stage(stage: str, args: list[str], cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", f"scanbench.stages.{stage}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_head_stage_fits_a_probe_for_non_imagenet_classes_and_targets_uses_it(tmp_path):
    root = _colour_tree(tmp_path / "ds")
    _params(tmp_path, root)
    res = _stage("prepare", ["--out", "data/manifest.csv", "--report", "results/prepare.json"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    res = _stage("head", [], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    meta = json.loads((tmp_path / "cache" / "head" / "meta.json").read_text())
    info = meta["heads"]["effnet_lite0"]
    assert meta["kind"] == "linear_probe" and meta["n_classes"] == 3
    assert info["reason"] == "3 of the data's 3 classes are not ImageNet classes"
    assert info["n_train"] == 18 and info["n_val"] == 12 and info["feature_dim"] == 1280
    assert info["val_top1"] >= 90.0          # three colours: trivially separable by pretrained features
    cached = np.load(tmp_path / "cache" / "head" / "effnet_lite0" / "features_train.npy")
    assert cached.shape == (18, 1280) and cached.dtype == np.float16
    res = _stage("targets", ["--backbone", "effnet_lite0", "--results", "results/targets"], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    out = json.loads((tmp_path / "results" / "targets" / "effnet_lite0.json").read_text())
    assert out["head"]["kind"] == "linear_probe" and out["head"]["probe_val_top1"] == info["val_top1"]
    # backbone + head through ONNX vs the probe on float16 features: at most one image may flip
    assert abs(out["val_top1"] - info["val_top1"]) <= 100 / 12 + 1e-6 and out["val_top1"] >= 90.0
    model = load_target("effnet_lite0", tmp_path / "models" / "targets" / "effnet_lite0" / "model.pt")
    assert model.head is not None and model.class_indices is None
    assert model(torch.rand(1, 3, 224, 224)).shape == (1, 3)


@pytest.mark.slow   # fine-tunes EfficientNet-Lite0's last block at 224 px on the CPU
def test_head_stage_last_block_fine_tunes_and_the_target_loads_it(tmp_path):
    from scanbench.data import class_table, load_manifest
    from scanbench.head import pretrained_target

    root = _colour_tree(tmp_path / "ds", n_train=3, n_val=2)
    _params(tmp_path, root, lambda p: (p["head"].update(kind="last_block", last_block_epochs=1),
                                       p["explain"].update(n_images=2), p["features"].update(n_holdout=2),
                                       p["sanity"].update(n_images=2), p["scaling"].update(n_images=2),
                                       p["timing"].update(n_images=2)))
    assert _stage("prepare", ["--out", "data/manifest.csv", "--report", "r.json"], tmp_path).returncode == 0
    res = _stage("head", [], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    info = json.loads((tmp_path / "cache" / "head" / "meta.json").read_text())["heads"]["effnet_lite0"]
    assert info["fine_tuned_from"] == "net.blocks.6" and info["n_fine_tuned_params"] > 1_000_000
    assert "probe_val_top1" in info and 0 <= info["val_top1"] <= 100
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    model = pretrained_target(get_backbone("effnet_lite0"), class_table(load_manifest(tmp_path / "data/manifest.csv")),
                              tmp_path / "cache" / "head", params)
    ckpt = torch.load(tmp_path / "cache" / "head" / "effnet_lite0" / "head.pt", weights_only=True)
    assert "net.blocks.6.0.conv_pw.weight" in ckpt["state_dict"] and "net.blocks.5.0.conv_pw.weight" not in \
        ckpt["state_dict"]
    for k, v in ckpt["state_dict"].items():                       # the fine-tuned tensors, not the pretrained ones
        assert torch.equal(model.state_dict()[k], v), k
    pretrained = get_backbone("effnet_lite0").build(pretrained=True, head_classes=3)
    assert not torch.equal(pretrained.state_dict()["net.blocks.6.0.conv_pw.weight"],
                           model.state_dict()["net.blocks.6.0.conv_pw.weight"])


def test_head_stage_skips_for_imagenet_classes_without_loading_a_model(tmp_path):
    import pandas as pd

    from scanbench.data import MANIFEST_COLUMNS

    rows = [{"path": f"{s}/n01440764/{k}.png", "label": 0, "split": s, "class_name": "tench", "wnid": "n01440764",
             "imagenet_index": 0, "converted": False} for s in ("train", "val") for k in range(2)]
    rows += [{**r, "path": r["path"].replace("n01440764", "n02102040"), "label": 1, "wnid": "n02102040",
              "imagenet_index": 217} for r in rows]
    (tmp_path / "data").mkdir()
    pd.DataFrame(rows, columns=MANIFEST_COLUMNS).to_csv(tmp_path / "data" / "manifest.csv", index=False)
    _params(tmp_path, tmp_path / "no_images_here")
    res = _stage("head", [], tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "cache" / "head").iterdir()) == ["meta.json"]
    meta = json.loads((tmp_path / "cache" / "head" / "meta.json").read_text())
    assert meta["heads"] == {} and "skipped" in meta


def test_head_stage_bad_kind_and_missing_head_are_one_line(tmp_path):
    root = _colour_tree(tmp_path / "ds", n_train=1, n_val=1)
    _params(tmp_path, root, lambda p: p["head"].update(kind="svm"))
    res = _stage("head", [], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: head.kind = 'svm'")
    # targets on non-ImageNet classes with a head stage that fitted nothing for the backbone: names the fix
    _params(tmp_path, root, lambda p: (p["explain"].update(n_images=1), p["features"].update(n_holdout=1),
                                       p["sanity"].update(n_images=1), p["scaling"].update(n_images=1),
                                       p["timing"].update(n_images=1)))
    assert _stage("prepare", ["--out", "data/manifest.csv", "--report", "r.json"], tmp_path).returncode == 0
    (tmp_path / "cache" / "head").mkdir(parents=True)
    (tmp_path / "cache" / "head" / "meta.json").write_text(json.dumps({"kind": "linear_probe", "heads": {}}))
    res = _stage("targets", ["--backbone", "effnet_lite0", "--results", "results/targets"], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert "effnet_lite0 needs a fitted head (3 of the data's 3 classes are not ImageNet classes)" in last
    assert "dvc repro head" in last
