"""The smoke profile carries hand-drawn boxes (profiles/smoke_boxes.csv, named by data.boxes)
on its evaluation images, so that the smoke DAG (CI) runs the localisation metrics; data.boxes: null keeps the data
root's optional boxes.csv (default and paper profiles)."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from scanbench.boxes import BOXES_FILE, box_masks, boxes_file, load_checked_boxes, read_boxes
from scanbench.data import build_manifest, eval_indices
from scanbench.errors import ScanbenchError

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())


@pytest.mark.parametrize("name", ["default", "paper"])
def test_profiles_without_boxes_file_keep_the_data_root_convention(name, tmp_path):
    params = yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
    assert params["data"]["boxes"] is None
    assert boxes_file(params, tmp_path) == tmp_path / BOXES_FILE


def test_a_named_boxes_file_must_exist_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ScanbenchError, match=r"data.boxes = nope.csv: no such file") as err:
        boxes_file({"data": {"boxes": "nope.csv"}}, tmp_path)
    assert "\n" not in str(err.value)
    with pytest.raises(ScanbenchError, match=r"data.boxes = 3: give a CSV file path"):
        boxes_file({"data": {"boxes": 3}}, tmp_path)
    (tmp_path / "mine.csv").write_text("path,x0,y0,x1,y1\n")
    assert boxes_file({"data": {"boxes": "mine.csv"}}, tmp_path) == Path("mine.csv")


def test_smoke_boxes_cover_every_smoke_evaluation_image(data_root, monkeypatch):
    """The committed boxes pass the stage's checks on the real smoke manifest, and every evaluation image has one:
    the smoke run's localisation scores all of explain.n_images, none skipped."""
    params = copy.deepcopy(SMOKE)
    manifest, _ = build_manifest(data_root, params["data"]["splits"], limit_per_class=params["data"]["limit_per_class"])
    monkeypatch.chdir(REPO)                   # data.boxes is relative to the repo root, where DVC runs the stage
    path = boxes_file(params, data_root)
    assert path == Path("profiles/smoke_boxes.csv")
    boxes, skipped = read_boxes(data_root, manifest["path"].tolist(), path)
    assert skipped == 0 and len(boxes) >= params["explain"]["n_images"]
    eval_paths = manifest["path"].to_numpy()[eval_indices(manifest, params)].tolist()
    assert set(boxes["path"]) == set(eval_paths)
    masks = box_masks(boxes, eval_paths, 224)
    shares = np.array([m.mean() for m in masks])
    # drawn around objects, not around whole images: the chance level (mean area share) stays informative
    assert 0.1 < shares.min() and shares.max() < 1.0 and shares.mean() < 0.6


def _run_boxes_stage(cwd: Path):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "scanbench.stages.boxes"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_boxes_stage_reads_the_file_data_boxes_names(data_root, tmp_path):
    """The stage with the smoke profile's params writes the named file's boxes (run from a copy of the repo's
    relevant files, as DVC runs it from the repo root); a missing named file is one line, exit 2."""
    params = copy.deepcopy(SMOKE)
    params["data"]["root"] = str(data_root)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "smoke_boxes.csv").write_bytes((REPO / "profiles" / "smoke_boxes.csv").read_bytes())
    (tmp_path / "data").mkdir()
    manifest, _ = build_manifest(data_root, params["data"]["splits"], limit_per_class=params["data"]["limit_per_class"])
    manifest.to_csv(tmp_path / "data" / "manifest.csv", index=False)
    res = _run_boxes_stage(tmp_path)
    assert res.returncode == 0, res.stderr
    written = load_checked_boxes(tmp_path / "data" / "boxes.csv")
    n_rows = len((REPO / "profiles" / "smoke_boxes.csv").read_text().strip().splitlines()) - 1
    assert len(written) == n_rows and set(written["width"]) == {224}
    assert "from profiles/smoke_boxes.csv" in res.stdout

    before = (tmp_path / "data" / "boxes.csv").read_bytes()
    (tmp_path / "profiles" / "smoke_boxes.csv").unlink()
    res = _run_boxes_stage(tmp_path)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("error: data.boxes = profiles/smoke_boxes.csv: no such file")
    assert (tmp_path / "data" / "boxes.csv").read_bytes() == before


def test_smoke_profile_on_other_data_drops_its_boxes_but_keeps_them_on_its_own(tmp_path):
    """`python -m scanbench.profile smoke --data ROOT`: the hand-drawn boxes name the smoke images, so on another
    root data.boxes becomes null (that root's own boxes.csv, if any); on the same root, however written, they stay."""
    from scanbench.profile import use_profile

    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    (tmp_path / "mydata" / "train").mkdir(parents=True)
    _, changes = use_profile("smoke", tmp_path, data_root="mydata")
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["data"]["boxes"] is None
    assert any(c.startswith("data.boxes = null") for c in changes)

    own = (tmp_path / SMOKE["data"]["root"]).resolve()            # the smoke root, given as an absolute path
    own.mkdir(parents=True)
    _, changes = use_profile("smoke", tmp_path, data_root=str(own))
    assert yaml.safe_load((tmp_path / "params.yaml").read_text())["data"]["boxes"] == "profiles/smoke_boxes.csv"
    assert not any("data.boxes" in c for c in changes)
