"""Bad input: each case is one line naming the thing to fix (exit 2 from a stage), never a traceback
and never a silently wrong number. Library-level checks here; a few run the stage script as a user would."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from scanbench.config import check_image_counts, check_param_keys, load_params, validate_params
from scanbench.data import MIN_IMAGE_SIDE, build_manifest, check_split_sizes, eval_indices, holdout_indices, load_image
from scanbench.errors import ScanbenchError
from scanbench.io import load_npz, load_torch, producing_stage, save_npz, save_torch

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
WNIDS = ("n01440764", "n02102040", "n02979186")


def _image(path: Path, side: int = 40, seed: int = 0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rgb = (np.random.default_rng(seed).random((side, side, 3)) * 255).astype(np.uint8)
    Image.fromarray(rgb).save(path)


def _tree(root: Path, classes=WNIDS, per_class: int = 2) -> Path:
    for split in ("train", "val"):
        for c in classes:
            for k in range(per_class):
                _image(root / split / c / f"{k}.png", seed=k)
    return root


def run_stage(stage: str, args: list[str], cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", f"scanbench.stages.{stage}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def one_line_error(res) -> str:
    """The stage failed as designed: exit 2, no traceback, the message is the last stderr line."""
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr, res.stderr[-2000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    return last


def write_params(folder: Path, mutate=lambda p: None) -> Path:
    params = copy.deepcopy(SMOKE)
    mutate(params)
    (folder / "params.yaml").write_text(yaml.safe_dump(params))
    return folder / "params.yaml"


# ------------------------------------------------------------------------------------- own data: the classes

def test_non_wnid_class_folders_are_the_datas_own_classes(tmp_path):
    # accepted: labels are the data's class indices, imagenet_index -1 where no wnid (the
    # `head` stage fits a head for them: tests/test_head.py)
    root = _tree(tmp_path / "ds", classes=("n01440764", "cat", "dog"))
    manifest, _ = build_manifest(root, check_images=False)
    table = manifest.drop_duplicates("label").sort_values("label")
    assert table["wnid"].tolist() == ["cat", "dog", "n01440764"]
    assert table["label"].tolist() == [0, 1, 2]
    assert table["imagenet_index"].tolist() == [-1, -1, 0]


def test_fewer_than_two_classes_are_refused(tmp_path):
    root = _tree(tmp_path / "ds", classes=("n01440764",))
    with pytest.raises(ScanbenchError, match="at least 2 classes"):
        build_manifest(root, check_images=False)


# ------------------------------------------------------------------------------------- params

@pytest.mark.parametrize("fractions, match", [
    ([0.0, 0.2, 0.1, 0.3], "strictly increasing"),
    ([0.0, 0.1, 0.1, 0.2], "strictly increasing"),
    ([0.0, 0.5, 1.0], r"\[0, 1\)"),
    ([-0.1, 0.5], r"\[0, 1\)"),
    ([0.0], "at least 2"),
    ("0.1", "at least 2"),
])
def test_bad_fractions_name_the_param(fractions, match):
    params = copy.deepcopy(SMOKE)
    params["evaluate"]["fractions"] = fractions
    with pytest.raises(ScanbenchError, match=f"evaluate.fractions.*{match}"):
        validate_params(params)


@pytest.mark.parametrize("section, key, value, match", [
    ("explain", "n_images", 0, "explain.n_images must be an integer >= 1"),
    ("explain", "n_images", -3, "explain.n_images must be an integer >= 1"),
    ("explain", "n_images", None, "explain.n_images must be an integer >= 1"),
    ("features", "n_holdout", 0, "features.n_holdout must be an integer >= 1 or null"),
    ("sanity", "n_images", 13, "sanity.n_images = 13 exceeds explain.n_images = 12"),
    ("scaling", "n_images", 99, "scaling.n_images = 99 exceeds explain.n_images"),
    ("timing", "n_images", 0, "timing.n_images must be an integer >= 1"),
])
def test_bad_image_counts_name_the_param(section, key, value, match):
    params = copy.deepcopy(SMOKE)
    params[section][key] = value
    with pytest.raises(ScanbenchError, match=match):
        check_image_counts(params)
    with pytest.raises(ScanbenchError, match=match):
        validate_params(params)


def test_ablations_take_the_evaluation_image_count():
    """The ablations score every evaluation image (explain.n_images), so that their rows pair image by image with
    each other and with Tables I/II: a count of their own is refused, naming the key to delete."""
    params = copy.deepcopy(SMOKE)
    params["ablation"]["n_images"] = 8
    with pytest.raises(ScanbenchError, match=r"ablation\.n_images is not a key: the ablations score every "
                                             r"evaluation image \(explain\.n_images\).*delete it"):
        check_param_keys(params)
    del params["ablation"]["n_images"]
    check_param_keys(params)
    validate_params(params)


@pytest.mark.parametrize("key, value, match", [
    ("alphas", [2, 8], r"ablation\.alphas must include 4 \(ablation\.base_alpha\)"),
    ("layers", ["alt1", "alt2"], r"ablation\.layers must include default"),
    ("percentiles", [50, 90], r"ablation\.percentiles must include 95 \(the top-level p\)"),
    ("components", ["alpha1", "no_mask"], r"ablation\.components must include full \(all of SCAN\)"),
])
def test_ablation_lists_hold_their_reference_setting(key, value, match):
    params = copy.deepcopy(SMOKE)
    params["ablation"][key] = value
    with pytest.raises(ScanbenchError, match=match):
        validate_params(params)
    params["ablation"][key] = []              # a kind that does not run needs no reference
    validate_params(params)


@pytest.mark.parametrize("key, value, match", [
    ("cascade", [0, 0.5], "sanity.cascade must be increasing shares .* ending at 1"),
    ("cascade", [0.5, 0.25, 1], "sanity.cascade must be increasing"),
    ("cascade", [0, 2], "sanity.cascade"),
    ("cascade", "all", "sanity.cascade"),
    ("similarity_size", 8, "sanity.similarity_size must be an integer >= 16"),
    ("similarity_size", 56.5, "sanity.similarity_size must be an integer >= 16"),
])
def test_bad_sanity_similarity_params_name_the_param(key, value, match):
    params = copy.deepcopy(SMOKE)
    params["sanity"][key] = value
    with pytest.raises(ScanbenchError, match=match):
        validate_params(params)


def test_sanity_stage_refuses_a_bad_cascade_in_one_line(tmp_path):
    write_params(tmp_path, lambda p: p["sanity"].update(cascade=[0, 0.5]))
    last = one_line_error(run_stage("sanity", ["--backbone", "effnet_lite0", "--method", "scan", "--out",
                                                  "a.json", "--maps-out", "b.json"], tmp_path))
    assert "sanity.cascade" in last and "[0, 0.5]" in last
    assert not (tmp_path / "a.json").exists() and not (tmp_path / "b.json").exists()


def test_null_counts_that_mean_all_are_kept():
    params = copy.deepcopy(SMOKE)                           # explain.n_images 12
    params["features"]["n_holdout"] = None                  # every val image not evaluated
    for section in ("sanity", "scaling"):
        params[section]["n_images"] = None                  # all explain.n_images evaluation images
    before = copy.deepcopy(params)
    validate_params(params)
    assert params == before                                 # accepted, and kept as null
    manifest = _manifest(20)
    evaluated = eval_indices(manifest, params)
    assert len(evaluated[: params["sanity"]["n_images"]]) == 12    # the stages' slice: every evaluation image
    held_out = holdout_indices(manifest, params)
    assert len(held_out) == 8 and not set(held_out) & set(evaluated)   # the rest of val, disjoint


def _manifest(n_val: int) -> pd.DataFrame:
    return pd.DataFrame({"path": [f"val/x/{i}.png" for i in range(n_val)], "label": [i % 2 for i in range(n_val)],
                         "split": ["val"] * n_val})


def test_counts_against_the_val_split():
    params = copy.deepcopy(SMOKE)                           # explain.n_images 12, features.n_holdout 8
    check_split_sizes(_manifest(20), params)                  # 12 + 8 = 20 fits exactly
    assert len(eval_indices(_manifest(20), params)) == 12
    with pytest.raises(ScanbenchError, match="features.n_holdout \\+ explain.n_images = 8 \\+ 12 exceeds the 19"):
        eval_indices(_manifest(19), params)
    with pytest.raises(ScanbenchError, match="explain.n_images = 12 must be below the 12 images of the val split"):
        check_split_sizes(_manifest(12), params)
    params["timing"]["n_images"] = 30
    with pytest.raises(ScanbenchError, match="timing.n_images = 30 exceeds the 20"):
        check_split_sizes(_manifest(20), params)


def test_prepare_refuses_a_val_split_too_small(tmp_path):
    root = _tree(tmp_path / "ds", per_class=2)               # 6 val images; smoke asks 12 + 8
    write_params(tmp_path, lambda p: p["data"].update(root=str(root)))
    last = one_line_error(run_stage("prepare", [], tmp_path))
    assert "explain.n_images = 12" in last and "6 images of the val split" in last
    assert not (tmp_path / "data" / "manifest.csv").exists()


def test_features_stage_refuses_counts_beyond_the_val_split(tmp_path):
    """Was `AttributeError: 'NoneType' object has no attribute 'flush'` (an empty held-out set) in `features`."""
    write_params(tmp_path, lambda p: p["explain"].update(n_images=20))   # sanity/ablation/scaling ask fewer
    (tmp_path / "data").mkdir()
    _manifest(20).assign(class_name="x", wnid="n01440764", imagenet_index=0, converted=False).to_csv(
        tmp_path / "data" / "manifest.csv", index=False)
    last = one_line_error(run_stage("features", ["--backbone", "effnet_lite0"], tmp_path))
    assert "explain.n_images = 20 must be below the 20 images of the val split" in last
    assert not (tmp_path / "features").exists()


def test_malformed_params_yaml(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("profile: smoke\nseed: 0\ndata:\n  root: [unclosed\n  splits: [train, val]\n")
    with pytest.raises(ScanbenchError, match=r"params.yaml is not valid YAML .*line \d+, column \d+"):
        load_params(bad)
    last = one_line_error(run_stage("prepare", [], tmp_path))
    assert "params.yaml is not valid YAML" in last and "line " in last
    bad.write_text("")
    with pytest.raises(ScanbenchError, match="holds no params"):
        load_params(bad)


# ------------------------------------------------------------------------------------- images

@pytest.mark.parametrize("mode", ["I;16", "I", "F"])
def test_high_bit_depth_grey_images_are_scaled_not_clipped(tmp_path, mode):
    """A 16-bit PNG used to become all white (PIL clips at 255); now v / 257 (F: [0, 1] x 255)."""
    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64)
    if mode == "I;16":
        path = tmp_path / "ramp16.png"
        Image.fromarray(ramp.astype(np.uint16)).save(path)
        assert Image.open(path).mode == "I;16"
        expected = ramp / 65535
    elif mode == "I":
        path = tmp_path / "ramp32.tif"
        Image.fromarray(ramp.astype(np.int32), mode="I").save(path)
        expected = ramp / 65535
    else:
        path = tmp_path / "rampf.tif"
        Image.fromarray((ramp / 65535).astype(np.float32), mode="F").save(path)
        expected = ramp / 65535
    img = load_image(path, 64)
    assert img.shape == (3, 64, 64)
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert np.abs(img[0].numpy() - expected).max() <= 1 / 255 + 1e-6     # the whole range, to 8-bit rounding
    assert img.min() == 0 and img.max() == 1 and abs(float(img.mean()) - 0.5) < 0.01


def test_eight_bit_values_in_a_32_bit_image_stay_as_they_are(tmp_path):
    values = np.tile(np.arange(0, 256, 4, dtype=np.int32), (64, 1))
    Image.fromarray(values, mode="I").save(tmp_path / "i8.tif")
    img = load_image(tmp_path / "i8.tif", 64)
    assert np.allclose(img[0].numpy() * 255, values, atol=1e-4)


def test_tiny_images_are_refused_naming_the_file(tmp_path):
    root = _tree(tmp_path / "ds")
    _image(root / "val" / WNIDS[1] / "speck.png", side=1)
    with pytest.raises(ScanbenchError, match=rf"val/{WNIDS[1]}/speck.png \(1 x 1 px\).*{MIN_IMAGE_SIDE} px|"
                                             rf"{MIN_IMAGE_SIDE} px minimum: val/{WNIDS[1]}/speck.png \(1 x 1 px\)"):
        build_manifest(root)
    _image(root / "val" / WNIDS[1] / "speck.png", side=MIN_IMAGE_SIDE)
    df, _ = build_manifest(root)
    assert f"val/{WNIDS[1]}/speck.png" in set(df["path"])


# ------------------------------------------------------------------------------------- damaged stage outputs

def _lock(folder: Path) -> None:
    (folder / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "train_scan@vitx-4-default": {"cmd": "x", "outs": [{"path": "models/scan/vitx/default", "md5": "0"}]},
        "explain_cnn@cnnx-gradcam": {"cmd": "x", "outs": [{"path": "maps/cnnx/gradcam.npz", "md5": "0"}]}}}))


def test_truncated_and_empty_checkpoints(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _lock(tmp_path)
    path = Path("models/scan/vitx/default/decoder.pt")
    save_torch(path, {"backbone": "vitx", "state_dict": {"w": torch.arange(10000, dtype=torch.float32)}})
    assert load_torch(path)["backbone"] == "vitx"                   # a whole one loads (weights_only=True)
    assert producing_stage(path) == "train_scan@vitx-4-default"
    data = path.read_bytes()
    for damaged in (data[: len(data) // 2], data[:100], b""):
        path.write_bytes(damaged)
        with pytest.raises(ScanbenchError, match=r"models/scan/vitx/default/decoder.pt is damaged or incomplete "
                                                 r"\(.*\): rebuild it with `dvc repro -f train_scan@vitx-4-default`"):
            load_torch(path)


def test_checkpoints_still_load_weights_only(tmp_path):
    """A pickle of arbitrary objects is refused (weights_only=True), as one line."""
    torch.save({"x": pd.DataFrame({"a": [1]})}, tmp_path / "evil.pt")
    with pytest.raises(ScanbenchError, match="evil.pt is damaged or incomplete"):
        load_torch(tmp_path / "evil.pt", stage="train_scan")


def test_decoder_without_lock_names_the_stage_family(tmp_path, monkeypatch):
    from scanbench.scan.train import load_decoder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "decoder.pt").write_bytes(b"")
    with pytest.raises(ScanbenchError, match=r"decoder.pt is damaged or incomplete \(EOFError: 0 bytes\): "
                                             r"rebuild it with `dvc repro -f <the train_scan stage that writes it>`"):
        load_decoder(tmp_path / "decoder.pt", "vitx")


def test_truncated_maps_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _lock(tmp_path)
    path = Path("maps/cnnx/gradcam.npz")
    save_npz(path, maps=np.random.default_rng(0).random((4, 32, 32)).astype(np.float16), indices=np.arange(4))
    assert set(load_npz(path)) == {"maps", "indices"}
    data = path.read_bytes()
    for damaged in (data[: len(data) - 30], data[: len(data) // 2], b""):
        path.write_bytes(damaged)
        with pytest.raises(ScanbenchError, match=r"maps/cnnx/gradcam.npz is damaged or incomplete "
                                                 r"\(.*\): rebuild it with `dvc repro -f explain_cnn@cnnx-gradcam`"):
            load_npz(path)
    Path("dvc.lock").unlink()                                   # not run yet here: the caller's exact name
    with pytest.raises(ScanbenchError, match=r"\(EOFError: 0 bytes\): rebuild it with `dvc repro -f explain_cnn@b-m`"):
        load_npz(path, stage="explain_cnn@b-m")


def test_evaluate_stage_on_a_truncated_maps_file(tmp_path):
    write_params(tmp_path)
    _lock(tmp_path)
    (tmp_path / "data").mkdir()
    _manifest(4).assign(class_name="x", wnid="n01440764", imagenet_index=0, converted=False).to_csv(
        tmp_path / "data" / "manifest.csv", index=False)
    maps = tmp_path / "maps" / "cnnx" / "gradcam.npz"
    save_npz(maps, maps=np.zeros((4, 8, 8), np.float16), indices=np.arange(4), labels=np.zeros(4, int),
             classes=np.zeros(4, int))
    maps.write_bytes(maps.read_bytes()[:-40])
    last = one_line_error(run_stage("evaluate", ["--backbone", "effnet_lite0", "--method", "gradcam",
                                                   "--maps", "maps/cnnx/gradcam.npz", "--out", "out.json"], tmp_path))
    assert "maps/cnnx/gradcam.npz is damaged or incomplete" in last
    assert "dvc repro -f explain_cnn@cnnx-gradcam" in last
    assert not (tmp_path / "out.json").exists()


# ------------------------------------------------------------------------------------- paper profile offline

def test_paper_backbone_offline_fails_at_once_naming_the_weights(no_hub, monkeypatch):
    import timm

    from scanbench.backbones import _hub_reachable, get_backbone

    calls = []
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: calls.append(a) or pytest.fail("no download try"))
    assert not _hub_reachable()
    spec = get_backbone("vgg16")
    with pytest.raises(ScanbenchError, match=r"pretrained weights for vgg16 \(Hugging Face repo timm/vgg16.tv_in1k\) "
                                             r"are not in the local cache .* hub is unreachable"):
        spec.factory(spec, pretrained=True)
    assert not calls


def test_paper_backbone_offline_with_cached_weights_loads_them_without_the_hub(no_hub, monkeypatch):
    import timm
    from huggingface_hub import constants

    from scanbench.backbones import _cached_weights, get_backbone

    snap = no_hub / "models--timm--resnetv2_50.a1h_in1k" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "model.safetensors").write_bytes(b"x")
    (no_hub / "models--timm--resnetv2_50.a1h_in1k" / "refs").mkdir()
    (no_hub / "models--timm--resnetv2_50.a1h_in1k" / "refs" / "main").write_text("abc123")
    assert _cached_weights("resnetv2_50") == str(snap / "model.safetensors")
    seen = {}
    monkeypatch.setattr(timm, "create_model", lambda name, pretrained, **k: seen.update(
        name=name, pretrained=pretrained, offline=constants.HF_HUB_OFFLINE) or torch.nn.Identity())
    spec = get_backbone("resnetv2_50")
    spec.factory(spec, pretrained=True)
    assert seen == {"name": "resnetv2_50", "pretrained": True, "offline": True}   # the hub client reads the cache
    assert constants.HF_HUB_OFFLINE is False                                       # ... for that call only
