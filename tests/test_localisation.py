"""Localisation where the data has boxes: the boxes.csv convention and its checks, boxes mapped through
the same resize as the images, energy inside the boxes and the pointing game, the report's table, and nothing new
when there are no boxes. Synthetic images: an object (a plain red rectangle) pasted on a plain grey background."""
from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from scanbench.boxes import (
    BOXES_FILE,
    CHECKED_COLUMNS,
    box_mask,
    box_masks,
    load_checked_boxes,
    read_boxes,
    write_checked_boxes,
)
from scanbench.data import build_manifest, load_image
from scanbench.errors import ScanbenchError
from scanbench.metrics.localisation import area_share, energy_in_boxes, localisation_scores, pointing_game
from scanbench.report.results import long_table, tidy
from scanbench.report.tables import CHANCE_ROW, build_tables, localisation_table, markdown

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
WNIDS = ("n01440764", "n02102040")
BG, OBJ = (128, 128, 128), (230, 20, 20)


def _pasted(path: Path, width: int, height: int, box: tuple[int, int, int, int]) -> None:
    """A width x height grey image with a red rectangle on pixels [x0, x1) x [y0, y1)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (width, height), BG)
    x0, y0, x1, y1 = box
    img.paste(Image.new("RGB", (x1 - x0, y1 - y0), OBJ), (x0, y0))
    img.save(path)


def _tree(root: Path) -> Path:
    """2 classes x 2 images per split, 128 x 96 px, the object at (32, 24, 96, 72)."""
    for split in ("train", "val"):
        for c in WNIDS:
            for k in range(2):
                _pasted(root / split / c / f"{k}.png", 128, 96, (32, 24, 96, 72))
    return root


def _manifest_paths(root: Path) -> list[str]:
    return build_manifest(root)[0]["path"].tolist()


def _boxes_file(root: Path, text: str) -> Path:
    (root / BOXES_FILE).write_text(text)
    return root / BOXES_FILE


def _object_mask(img01: np.ndarray) -> np.ndarray:
    """Pixels of the loaded image nearer the object's red than the background's grey (3 x S x S in [0, 1])."""
    px = img01.transpose(1, 2, 0) * 255
    return (np.linalg.norm(px - OBJ, axis=2) < np.linalg.norm(px - BG, axis=2))


def _near_boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels within one pixel (8-neighbourhood) of the mask's edge, on either side."""
    p = np.pad(mask, 1, mode="edge")
    shifts = [p[1 + dy:1 + dy + mask.shape[0], 1 + dx:1 + dx + mask.shape[1]]
              for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.any([s != mask for s in shifts], axis=0)


# ------------------------------------------------------------------------------------------ the convention

def test_checked_boxes_carry_the_image_size_and_keep_several_rows_per_image(tmp_path):
    root = _tree(tmp_path / "d")
    _boxes_file(root, "path,x0,y0,x1,y1\nval/n01440764/0.png,32,24,96,72\n\n./val/n01440764/0.png,0,0,8,8.5\n"
                      "val/n02102040/1.png, 1 ,2,3,4\n")
    boxes, skipped = read_boxes(root, _manifest_paths(root))
    assert skipped == 0 and list(boxes.columns) == CHECKED_COLUMNS
    assert boxes["path"].tolist() == ["val/n01440764/0.png", "val/n01440764/0.png", "val/n02102040/1.png"]
    assert boxes[["width", "height"]].drop_duplicates().values.tolist() == [[128, 96]]
    assert boxes.iloc[1][["x0", "y0", "x1", "y1"]].tolist() == [0, 0, 8, 8.5]


def test_no_boxes_file_gives_the_header_alone_and_same_bytes(tmp_path):
    root = _tree(tmp_path / "d")
    boxes, skipped = read_boxes(root, _manifest_paths(root))
    assert boxes.empty and skipped == 0
    write_checked_boxes(boxes, tmp_path / "a.csv")
    assert (tmp_path / "a.csv").read_text() == ",".join(CHECKED_COLUMNS) + "\n"
    assert load_checked_boxes(tmp_path / "a.csv").empty
    _boxes_file(root, "path,x0,y0,x1,y1\nval/n01440764/0.png,32,24,96,72.25\n")
    boxes, _ = read_boxes(root, _manifest_paths(root))
    write_checked_boxes(boxes, tmp_path / "b.csv")
    write_checked_boxes(read_boxes(root, _manifest_paths(root))[0], tmp_path / "c.csv")
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()
    back = load_checked_boxes(tmp_path / "b.csv")
    assert back.iloc[0].tolist() == ["val/n01440764/0.png", 128, 96, 32.0, 24.0, 96.0, 72.25]


def test_boxes_of_images_the_manifest_does_not_index_are_skipped_and_counted(tmp_path):
    root = _tree(tmp_path / "d")
    _boxes_file(root, "path,x0,y0,x1,y1\nval/n01440764/1.png,1,1,5,5\nval/n01440764/0.png,1,1,5,5\n")
    limited = build_manifest(root, limit_per_class=1)[0]["path"].tolist()    # 0.png of each class only
    boxes, skipped = read_boxes(root, limited)
    assert skipped == 1 and boxes["path"].tolist() == ["val/n01440764/0.png"]


@pytest.mark.parametrize("row, match", [
    ("val/n01440764/0.png,40,24,30,72", r"line 2: x1 = 30 is not above x0 = 40"),
    ("val/n01440764/0.png,32,24,96,24", r"line 2: y1 = 24 is not above y0 = 24"),
    ("val/n01440764/0.png,32,abc,96,72", r"line 2: y0 = 'abc' is not a finite number"),
    ("val/n01440764/0.png,32,nan,96,72", r"line 2: y0 = 'nan' is not a finite number"),
    ("val/n01440764/0.png,32,24,129,72", r"line 2: box \(32, 24, 129, 72\) lies outside the 128 x 96 px image"),
    ("val/n01440764/0.png,-1,24,96,72", r"line 2: box \(-1, 24, 96, 72\) lies outside"),
    ("val/n01440764/nope.png,32,24,96,72", r"line 2: 'val/n01440764/nope.png' names no image under"),
    ("val/n01440764/0.png,32,24,96", r"line 2: 4 fields, expected 5"),
    (",32,24,96,72", r"line 2: empty path"),
    ("/etc/passwd,32,24,96,72", r"line 2: path '/etc/passwd' is not inside the data root"),
    ("../d/val/n01440764/0.png,32,24,96,72", r"line 2: path '../d/val/n01440764/0.png' is not inside the data root"),
])
def test_bad_rows_are_one_line_naming_file_and_line(tmp_path, row, match):
    root = _tree(tmp_path / "d")
    path = _boxes_file(root, f"path,x0,y0,x1,y1\n{row}\n")
    with pytest.raises(ScanbenchError, match=match) as err:
        read_boxes(root, _manifest_paths(root))
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith(str(path))


@pytest.mark.parametrize("text, match", [
    ("file,x0,y0,x1,y1\n", r"line 1: header is 'file,x0,y0,x1,y1', expected 'path,x0,y0,x1,y1'"),
    ("", r"is empty: give it the header"),
    ("\n\n", r"is empty"),
])
def test_bad_header_or_empty_file(tmp_path, text, match):
    root = _tree(tmp_path / "d")
    _boxes_file(root, text)
    with pytest.raises(ScanbenchError, match=match):
        read_boxes(root, _manifest_paths(root))


def _run(stage: str, args: list[str], cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", f"scanbench.stages.{stage}", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def _stage_folder(tmp_path: Path) -> Path:
    root = _tree(tmp_path / "d")
    params = copy.deepcopy(SMOKE)
    params["data"].update(root=str(root), limit_per_class=None, boxes=None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "data").mkdir()
    build_manifest(root)[0].to_csv(tmp_path / "data" / "manifest.csv", index=False)
    return root


def test_boxes_stage_writes_the_checked_file_and_refuses_a_bad_row_in_one_line(tmp_path):
    root = _stage_folder(tmp_path)
    res = _run("boxes", [], tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "data" / "boxes.csv").read_text() == ",".join(CHECKED_COLUMNS) + "\n"
    _boxes_file(root, "path,x0,y0,x1,y1\nval/n01440764/0.png,32,24,96,72\n")
    res = _run("boxes", [], tmp_path)
    assert res.returncode == 0, res.stderr
    assert load_checked_boxes(tmp_path / "data" / "boxes.csv").shape == (1, len(CHECKED_COLUMNS))
    before = (tmp_path / "data" / "boxes.csv").read_bytes()
    _boxes_file(root, "path,x0,y0,x1,y1\nval/n01440764/0.png,32,24,96,72\nval/n01440764/0.png,9,24,9,72\n")
    res = _run("boxes", [], tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "boxes.csv line 3: x1 = 9 is not above x0 = 9" in last
    assert (tmp_path / "data" / "boxes.csv").read_bytes() == before      # nothing written on error


def test_evaluate_without_its_boxes_file_names_the_stage(tmp_path):
    with pytest.raises(ScanbenchError, match=r"not found: run the `boxes` stage \(dvc repro boxes\)"):
        load_checked_boxes(tmp_path / "data" / "boxes.csv")


# ------------------------------------------------------------------------------ boxes through the resize

@pytest.mark.parametrize("size", [64, 224])
def test_a_box_maps_onto_the_pixels_the_object_lands_on_after_load_image(tmp_path, size):
    """The box goes through what data.load_image does to the image (a non-square image squashed to a square, down-
    and upsampled): the mask is where the object lands, exactly on an aligned grid and up to the edge pixels
    (interpolation) otherwise."""
    for width, height, box in ((128, 96, (32, 24, 96, 72)), (150, 77, (17, 9, 101, 60)), (40, 200, (3, 150, 39, 199))):
        path = tmp_path / f"{width}x{height}.png"
        _pasted(path, width, height, box)
        mask = box_mask(np.array([box]), width, height, size)
        obj = _object_mask(load_image(path, size).numpy())
        wrong = mask != obj
        assert not (wrong & ~_near_boundary(mask)).any(), (width, height, size)
        assert wrong.sum() <= 0.5 * _near_boundary(mask).sum()
    # aligned: 128 x 96 to 64 x 64 halves x and scales y by 2/3, so (32, 24, 96, 72) is [16, 48) x [16, 48)
    expected = np.zeros((64, 64), bool)
    expected[16:48, 16:48] = True
    assert np.array_equal(box_mask(np.array([[32, 24, 96, 72]]), 128, 96, 64), expected)


def test_a_map_pixel_is_in_a_box_when_most_of_it_is(tmp_path):
    """60 -> 20 px: map pixel j covers image pixels [3j, 3j + 3). The box [4, 14) x [7, 17) covers 2/3 of the map
    pixels at its edges (columns 1 and 4, rows 2 and 5): in, as its centre is, and as the resized object is."""
    box = (4, 7, 14, 17)
    mask = box_mask(np.array([box]), 60, 60, 20)
    expected = np.zeros((20, 20), bool)
    expected[2:6, 1:5] = True
    assert np.array_equal(mask, expected)
    _pasted(tmp_path / "x.png", 60, 60, box)
    obj = _object_mask(load_image(tmp_path / "x.png", 20).numpy())
    # the resized object agrees along a middle row and column (its corners are 2/3 x 2/3 < 1/2 object, and out)
    assert np.array_equal(obj[3], expected[3]) and np.array_equal(obj[:, 2], expected[:, 2])


def test_union_of_boxes_and_a_box_thinner_than_a_pixel():
    two = box_mask(np.array([[0, 0, 10, 10], [5, 5, 20, 20]]), 20, 20, 20)
    assert two.sum() == 100 + 225 - 25
    thin = box_mask(np.array([[10.2, 0, 10.4, 20]]), 20, 20, 4)    # 0.2 px wide: the column holding its centre
    assert thin[:, 2].all() and thin.sum() == 4


def test_masks_per_image_none_without_boxes(tmp_path):
    boxes = pd.DataFrame([["a.png", 10, 10, 0, 0, 5, 5], ["a.png", 10, 10, 5, 5, 10, 10]], columns=CHECKED_COLUMNS)
    a, b = box_masks(boxes, ["a.png", "b.png"], 10)
    assert b is None and a.sum() == 50


# ---------------------------------------------------------------------------------------------- the metrics

def _object_setup(n: int = 3, size: int = 64):
    mask = box_mask(np.array([[32, 24, 96, 72]]), 128, 96, size)        # a quarter of the pixels
    return np.repeat(mask[None], n, 0)


def test_a_map_equal_to_the_box_scores_one_and_a_uniform_map_the_area_share():
    masks = _object_setup()
    assert np.allclose(energy_in_boxes(masks.astype(float), masks), 1.0)
    assert np.allclose(pointing_game(masks.astype(float), masks), 1.0)
    uniform = np.ones(masks.shape)
    assert np.allclose(area_share(masks), 0.25)
    assert np.allclose(energy_in_boxes(uniform, masks), 0.25)
    assert np.allclose(pointing_game(uniform, masks), 0.25)                # ties: share of tied pixels inside
    outside = (~masks).astype(float)
    assert np.allclose(energy_in_boxes(outside, masks), 0.0) and np.allclose(pointing_game(outside, masks), 0.0)


def test_energy_counts_non_negative_mass_and_pointing_the_maximum():
    masks = _object_setup(1)
    m = np.where(masks, 1.0, -5.0)                                  # negative mass outside is no mass
    assert np.allclose(energy_in_boxes(m, masks), 1.0)
    m = np.where(masks, 1.0, 3.0)
    assert np.allclose(energy_in_boxes(m, masks), 0.25 / (0.25 + 0.75 * 3))
    assert np.allclose(pointing_game(m, masks), 0.0)
    m[0, 20, 20] = 4.0                                              # one peak, inside the box
    assert np.allclose(pointing_game(m, masks), 1.0)
    assert np.allclose(energy_in_boxes(np.zeros_like(m), masks), 0.25)     # no mass: scored as the uniform map


def test_scores_skip_images_without_boxes_and_carry_intervals():
    masks = _object_setup(4)
    maps = np.stack([masks[0] * 1.0, np.ones((64, 64)), masks[0] * 1.0, (~masks[0]) * 1.0])
    out = localisation_scores(maps, [masks[0], masks[1], None, masks[3]], [7, 3, 9, 1], n_resamples=200, seed=0)
    assert out["n_images"] == 3 and out["n_skipped"] == 1
    assert out["per_image"]["index"] == [7, 3, 1]
    assert out["per_image"]["energy"] == pytest.approx([1.0, 0.25, 0.0])
    assert out["energy"] == pytest.approx(1.25 / 3) and out["pointing"] == pytest.approx(1.25 / 3)
    assert out["chance_energy"] == pytest.approx(0.25)
    for k in ("energy", "pointing"):
        lo, hi = out[f"{k}_ci"]
        assert 0.0 <= lo < out[k] < hi <= 1.0
    same = localisation_scores(maps, [masks[0], masks[1], None, masks[3]], [7, 3, 9, 1], n_resamples=200, seed=0)
    assert same == out
    none = localisation_scores(maps, [None] * 4, [7, 3, 9, 1], n_resamples=200, seed=0)
    assert none["n_images"] == 0 and none["n_skipped"] == 4 and none["energy"] is None


def test_evaluate_adds_localisation_only_when_there_are_boxes():
    from scanbench.maps import box_localisation

    empty = pd.DataFrame(columns=CHECKED_COLUMNS)
    maps = np.ones((2, 64, 64), np.float16)
    assert box_localisation(empty, ["a.png", "b.png"], np.array([0, 1]), maps, 64, 50, 0) is None
    boxes = pd.DataFrame([["b.png", 128, 96, 32, 24, 96, 72]], columns=CHECKED_COLUMNS)
    loc = box_localisation(boxes, ["a.png", "b.png"], np.array([4, 5]), maps, 64, 50, 0)
    assert loc["n_images"] == 1 and loc["n_skipped"] == 1 and loc["per_image"]["index"] == [5]
    assert loc["energy"] == pytest.approx(0.25)


# ---------------------------------------------------------------------------------------------- the report

def _results(with_boxes: bool) -> pd.DataFrame:
    rows = []
    for m, e, p in (("scan", 0.6, 1.0), ("gradcam", 0.5, 0.5), ("random", 0.25, 0.0)):
        data = {"n_images": 4, "variants": {"fair": {"auc_d": 10.0, "auc_d_ci": [5.0, 15.0]}}, "drop": 1.0}
        if with_boxes:
            data["localisation"] = {"n_images": 3, "n_skipped": 1, "energy": e, "energy_ci": [e - 0.1, e + 0.1],
                                    "pointing": p, "pointing_ci": [max(p - 0.2, 0), min(p + 0.2, 1)],
                                    "chance_energy": 0.3, "per_image": {"index": [1, 2, 3]}}
        rows += tidy(data, part="evaluate", backbone="effnet_lite0", family="cnn", method=m, setting="")
    return long_table(rows)


def test_report_table_lists_methods_with_intervals_and_the_chance_row():
    assert localisation_table(_results(False)) is None
    t = localisation_table(_results(True))
    assert t.stem == "localisation"
    assert list(t.df.columns[:2]) == ["backbone", "method"]
    for c in ("energy", "energy_ci95", "pointing", "pointing_ci95", "n_images"):
        assert c in t.df.columns
    assert t.df["method"].tolist() == ["gradcam", "scan", "random", CHANCE_ROW]    # the tables' method order
    scan = t.df.iloc[1]
    assert scan["energy"] == pytest.approx(0.6) and scan["energy_ci95"] == "[0.5, 0.7]" and scan["n_images"] == 3
    chance = t.df.iloc[-1]
    assert chance["energy"] == pytest.approx(0.3) and chance["pointing"] == pytest.approx(0.3)
    assert any("chance level (uniform map) energy 0.3" in n and "1 evaluation image(s) without boxes" in n
               for n in t.notes)
    assert "| uniform map (chance)" in markdown(t)


def test_no_boxes_no_table():
    """Without boxes the report's tables are the paper's, as before (no empty localisation table)."""
    params = copy.deepcopy(SMOKE)
    stems = [t.stem for t in build_tables(_results(False), params)]
    assert "localisation" not in stems and all(s.startswith("table") for s in stems)
    assert [t.stem for t in build_tables(_results(True), params)] == stems + ["localisation"]
