"""The grid pointing game's stages (`mosaics`, `grid`) on a tiny manifest of real images, their params and their
one-line errors; the drivers they call (scanbench.grid_pointing.choose_mosaics, check_mosaics, grid_record)."""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from scanbench.backbones import get_backbone, save_target
from scanbench.config import check_grid_params
from scanbench.data import build_manifest, class_table, eval_indices, holdout_indices
from scanbench.errors import ScanbenchError
from scanbench.grid_pointing import check_mosaics, choose_mosaics, grid_record, score_with_examples

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
CNN, VIT = "effnet_lite0", "vit_tiny_convstem"


def _params(root: Path, **grid) -> dict:
    p = copy.deepcopy(SMOKE)
    p["data"].update(root=str(root), limit_per_class=3, boxes=None)
    p["compute"] = {"device": "cpu", "threads": 1, "nproc": 1}
    p["explain"].update(n_images=5, batch_size=8)
    p["sanity"]["n_images"] = 4
    p["explain"]["rise"].update(n_masks=8, batch_size=8)
    p["features"].update(n_holdout=4)
    p["evaluate"].update(engine="torch", bootstrap=50)
    p["grid"] = {"n_mosaics": 2, "n_candidates": None, "correct_only": True, "min_confidence": 0.5, **grid}
    return p


def _write_params(d: Path, name: str, params: dict) -> str:
    (d / name).write_text(yaml.safe_dump(params))
    return name


@pytest.fixture(scope="module")
def stage_dir(tmp_path_factory, data_root):
    """A tiny project: 3 images per class and split (21 candidate val images), the pretrained EfficientNet-Lite0
    (it classifies them correctly) and a random-init tiny ViT (it does not: mosaics of any candidate)."""
    d = tmp_path_factory.mktemp("grid")
    (d / "data").mkdir()
    manifest, _ = build_manifest(data_root, limit_per_class=3, check_images=False)
    manifest.to_csv(d / "data" / "manifest.csv", index=False)
    cnn = get_backbone(CNN)
    save_target(d / f"models/targets/{CNN}/model.pt", cnn,
                cnn.build(class_indices=class_table(manifest)["imagenet_index"].tolist(), pretrained=True))
    torch.manual_seed(0)
    vit = get_backbone(VIT)
    kwargs = {"num_classes": 10, "width": 32, "heads": 2}
    save_target(d / f"models/targets/{VIT}/model.pt", vit, vit.build(**kwargs), kwargs)
    _write_params(d, "params.yaml", _params(data_root))
    _write_params(d, "params_any.yaml", _params(data_root, correct_only=False, min_confidence=0.0, n_mosaics=3))
    return d


def _run(d: Path, stage: str, *args: str, params: str = "params.yaml") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("SCANBENCH_TORCHRUN_ARGS", None)
    return subprocess.run([sys.executable, "-m", f"scanbench.stages.{stage}", *args, "--params", params], cwd=d,
                          env=env, capture_output=True, text=True, timeout=300)


def _ok(r: subprocess.CompletedProcess) -> None:
    assert r.returncode == 0, r.stderr[-3000:]


def _one_line_error(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stderr[-3000:]
    lines = [line for line in r.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def _grid(d: Path, backbone: str, method: str, params: str = "params.yaml") -> subprocess.CompletedProcess:
    return _run(d, "grid", "--backbone", backbone, "--method", method, "--mosaics", f"data/mosaics/{backbone}.npz",
                "--out", f"results/grid/{backbone}/{method}.json", "--maps-out", f"maps/grid/{backbone}/{method}.npz",
                params=params)


@pytest.mark.slow   # launches the stages on real images (EfficientNet-Lite0 at 224 px)
def test_mosaics_and_grid_stages_end_to_end(stage_dir):
    d = stage_dir
    _ok(_run(d, "mosaics", "--backbone", CNN, "--out", f"data/mosaics/{CNN}.npz"))
    z = np.load(d / "data" / "mosaics" / f"{CNN}.npz")
    manifest = pd.read_csv(d / "data" / "manifest.csv")
    params = yaml.safe_load((d / "params.yaml").read_text())
    rows, classes = check_mosaics(dict(z), manifest, "mosaics")
    assert rows.shape == (2, 4) and len(np.unique(rows)) == 8
    assert not set(rows.ravel()) & (set(eval_indices(manifest, params)) | set(holdout_indices(manifest, params)))
    assert set(rows.ravel()) <= set(z["candidates"][z["correct"]])   # correct_only: images correct alone
    assert len(z["candidates"]) == 21 and z["correct"].sum() >= 8

    for method in ("centre", "gradcam", "rise"):
        _ok(_grid(d, CNN, method))
    rec = {m: json.loads((d / "results" / "grid" / CNN / f"{m}.json").read_text()) for m in ("centre", "gradcam",
                                                                                              "rise")}
    # the centre prior ignores the class asked: exactly chance on every tile
    assert rec["centre"]["share"] == 0.25 and rec["centre"]["pointing"] == 0.25
    assert np.all(np.array(rec["centre"]["per_tile"]["share"]) == 0.25)
    for r in rec.values():
        assert r["n_mosaics"] == 2 and r["mosaics"] == rows.tolist() and r["size"] == 224
        assert np.array(r["per_tile"]["share"]).shape == (2, 4) and len(r["share_ci"]) == 2
        assert 0 <= r["in_top4"] <= 1 and r["in_top4"] == rec["centre"]["in_top4"]   # the model's, not the map's
    kept = np.load(d / "maps" / "grid" / CNN / "gradcam.npz")
    assert kept["maps"].shape == (2, 4, 224, 224) and kept["maps"].dtype == np.float16
    np.testing.assert_array_equal(kept["rows"], rows)


@pytest.mark.slow   # launches the stages on real images
def test_a_weak_model_draws_from_any_candidate_when_correct_only_is_off(stage_dir):
    d = stage_dir
    r = _run(d, "mosaics", "--backbone", VIT, "--out", f"data/mosaics/{VIT}.npz")   # correct_only: too few
    assert "grid.n_mosaics = 2 exceeds the" in _one_line_error(r)
    assert not (d / "data" / "mosaics" / f"{VIT}.npz").exists()
    _ok(_run(d, "mosaics", "--backbone", VIT, "--out", f"data/mosaics/{VIT}.npz", params="params_any.yaml"))
    _ok(_grid(d, VIT, "centre", params="params_any.yaml"))
    rec = json.loads((d / "results" / "grid" / VIT / "centre.json").read_text())
    assert rec["n_mosaics"] == 3 and rec["share"] == 0.25 and rec["pointing"] == 0.25 and rec["size"] == 64


@pytest.mark.slow   # launches the stage
def test_grid_stage_refuses_a_bad_mosaics_file_in_one_line(stage_dir):
    d = stage_dir
    bad = d / "data" / "mosaics" / "bad.npz"
    bad.parent.mkdir(parents=True, exist_ok=True)
    np.savez(bad, rows=np.arange(6).reshape(2, 3), classes=np.zeros((2, 3), dtype=np.int64))
    r = _run(d, "grid", "--backbone", VIT, "--method", "centre", "--mosaics", str(bad), "--out", "x.json",
             "--maps-out", "x.npz")
    assert "must be n x 4" in _one_line_error(r) and not (d / "x.json").exists()
    r = _run(d, "grid", "--backbone", VIT, "--method", "centre", "--mosaics", "data/mosaics/none.npz", "--out",
             "x.json", "--maps-out", "x.npz")
    assert "none.npz not found" in _one_line_error(r)


# ---------------------------------------------------------------- the drivers, synthetic (no model, no images)

def _manifest(n_classes: int = 10, per_class: int = 12) -> pd.DataFrame:
    labels = np.repeat(np.arange(n_classes), per_class)
    return pd.DataFrame({"path": [f"val/{i}.JPEG" for i in range(len(labels))], "split": "val", "label": labels})


def _grid_params(**grid) -> dict:
    return {"seed": 0, "explain": {"n_images": 20}, "features": {"n_holdout": 10},
            "grid": {"n_mosaics": 5, "n_candidates": 60, "correct_only": True, "min_confidence": 0.5, **grid}}


def _logits(correct: bool):
    def classify(rows):
        labels = _manifest()["label"].to_numpy()[rows]
        return torch.nn.functional.one_hot(torch.as_tensor(labels if correct else (labels + 1) % 10), 10) * 10.0
    return classify


def test_choose_mosaics_draws_from_a_seeded_subset_of_correct_candidates():
    manifest, params = _manifest(), _grid_params()
    out = choose_mosaics(manifest, params, _logits(True))
    assert out["rows"].shape == (5, 4) and len(out["candidates"]) == 60 and out["correct"].all()
    assert set(out["rows"].ravel()) <= set(out["candidates"])
    np.testing.assert_array_equal(out["classes"], manifest["label"].to_numpy()[out["rows"]])
    again = choose_mosaics(manifest, params, _logits(True))
    np.testing.assert_array_equal(again["rows"], out["rows"])
    check_mosaics(out, manifest, "m.npz")


@pytest.mark.parametrize("grid, match", [
    ({}, r"that the 0 of the 60 candidate images .* allow: raise grid.n_candidates"),
    ({"n_candidates": None}, r"allow: lower grid.n_mosaics or grid.min_confidence$"),
])
def test_too_few_correct_images_name_the_key_to_change(grid, match):
    with pytest.raises(ScanbenchError, match=match) as err:
        choose_mosaics(_manifest(), _grid_params(**grid), _logits(False))
    assert "\n" not in str(err.value)


def test_correct_only_off_takes_any_candidate():
    out = choose_mosaics(_manifest(), _grid_params(correct_only=False), _logits(False))
    assert out["rows"].shape == (5, 4) and not out["correct"].any()


@pytest.mark.parametrize("change, match", [
    ({"rows": np.array([[0, 12, 24, 36]]), "classes": np.array([[0, 1, 2, 4]])}, "does not match the manifest"),
    ({"rows": np.array([[0, 1, 2, 500]]), "classes": np.array([[0, 0, 0, 0]])}, "outside the manifest"),
    ({"rows": np.array([[0, 1, 12, 24]]), "classes": np.array([[0, 0, 1, 2]])}, "repeats a class"),
    ({"rows": np.zeros((0, 4), dtype=np.int64), "classes": np.zeros((0, 4), dtype=np.int64)}, "must be n x 4"),
])
def test_check_mosaics_refuses_stale_or_malformed_files(change, match):
    with pytest.raises(ScanbenchError, match=match):
        check_mosaics(change, _manifest(), "m.npz")


def test_grid_record_and_kept_maps_of_an_oracle():
    """A map painting only the asked tile scores 1; the record holds per-tile scores and the first maps."""
    size, n = 8, 3
    mosaics = torch.rand(n, 3, size, size)
    classes = torch.arange(4).repeat(n, 1) + torch.arange(n)[:, None]

    def oracle(images, cls):   # tile k of each mosaic: paint tile k (the order score_mosaics asks in)
        maps = torch.zeros(len(images), size, size)
        for i in range(len(images)):
            r, c = divmod(i % 4, 2)
            maps[i, r * 4:(r + 1) * 4, c * 4:(c + 1) * 4] = 1
        return maps

    scores, kept = score_with_examples(lambda x: torch.zeros(len(x), 10), oracle, mosaics, classes, batch_size=2)
    rec = grid_record(scores, 50, 0)
    assert rec["share"] == 1.0 and rec["pointing"] == 1.0 and rec["n_mosaics"] == n
    assert np.array(rec["per_tile"]["share"]).shape == (n, 4)
    assert kept.shape == (2, 4, size, size) and kept.dtype == np.float16 and kept[1, 3, 7, 7] == 1


@pytest.mark.parametrize("change, match", [
    ({"n_mosaics": 0}, "grid.n_mosaics must be an integer >= 1"),
    ({"n_candidates": 7}, "raise grid.n_candidates"),
    ({"correct_only": "yes"}, "grid.correct_only must be true"),
    ({"min_confidence": 1.0}, r"grid.min_confidence must be a probability in \[0, 1\)"),
])
def test_grid_params_are_checked_naming_the_key(change, match):
    with pytest.raises(ScanbenchError, match=match) as err:
        check_grid_params(_grid_params(**{"n_mosaics": 2, "n_candidates": None, **change}))
    assert "\n" not in str(err.value)
