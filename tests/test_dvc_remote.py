"""Shared artefacts between hosts (docs/SCALE_OUT.md, "Share results between hosts"): a DVC remote (here a local
directory) takes the cached outputs with `dvc push`; a second checkout (a git clone: the code, dvc.yaml, dvc.lock,
no cache) gets them with `dvc pull`, byte for byte, and `dvc repro` then re-runs no stage whose outputs it pulled.

Runs the project's real `prepare` and `boxes` stages (dvc.yaml restricted to them, the smoke profile's params on a
tiny synthetic data root) in a throw-away git + DVC repository: the cheapest stages with cached outputs, the same
mechanism as models/, features/ and maps/."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
STAGES = ("check_params", "prepare", "boxes")   # check_params: prepare depends on its mark
CACHED_OUTS = ("data/manifest.csv", "data/boxes.csv")

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None,
                                reason="needs the dvc and git command-line tools")


def _sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(cwd / "src"),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    res = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, f"{' '.join(args)} failed:\n{res.stdout}\n{res.stderr}"
    return res


def _data_root(root: Path) -> Path:
    """2 classes x 3 images per split, 48 x 40 px, plain colours (a different one per image)."""
    for s, split in enumerate(("train", "val")):
        for c, wnid in enumerate(("n01440764", "n02102040")):
            for k in range(3):
                (root / split / wnid).mkdir(parents=True, exist_ok=True)
                Image.new("RGB", (48, 40), (40 * k, 100 * c, 120 * s)).save(root / split / wnid / f"{k}.png")
    (root / "boxes.csv").write_text("path,x0,y0,x1,y1\nval/n01440764/0.png,4,5,30,35\n")
    return root


def _project(dst: Path, data_root: Path) -> Path:
    """The code the two stages run, dvc.yaml restricted to them, smoke params on the synthetic data root."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "src", dst / "src", ignore=ignore)
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    spec = {"stages": {name: spec["stages"][name] for name in STAGES}}
    (dst / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    params = copy.deepcopy(yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text()))
    params["data"].update(root=str(data_root), limit_per_class=None, boxes=None)
    params["explain"]["n_images"] = 2
    params["features"]["n_holdout"] = 1
    for section in ("timing", "sanity", "scaling"):
        params[section]["n_images"] = 1
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / ".gitignore").write_text("__pycache__/\n/logs/\n/reports/\n")
    return dst


def test_push_then_pull_on_a_second_checkout_gives_the_same_bytes_and_reruns_nothing(tmp_path):
    host_a = _project(tmp_path / "host_a", _data_root(tmp_path / "imagenette"))
    store = tmp_path / "dvcstore"
    _sh(["git", "init", "-q"], host_a)
    _sh(["dvc", "init", "-q"], host_a)
    _sh(["dvc", "config", "core.analytics", "false"], host_a)
    _sh(["dvc", "remote", "add", "-d", "store", str(store)], host_a)       # as the README says
    _sh(["dvc", "repro", "-q"], host_a)
    produced = {p: (host_a / p).read_bytes() for p in CACHED_OUTS}
    assert b"val/n01440764/0.png" in produced["data/boxes.csv"]           # real outputs, not empty files
    _sh(["git", "add", "-A"], host_a)
    _sh(["git", "commit", "-qm", "run"], host_a)
    _sh(["dvc", "push", "-q"], host_a)
    stored = [p for p in store.rglob("*") if p.is_file()]
    assert len(stored) >= len(CACHED_OUTS)                                # one object per cached output

    host_b = tmp_path / "host_b"
    _sh(["git", "clone", "-q", str(host_a), str(host_b)], tmp_path)      # code + dvc.lock, no cache, no outputs
    assert not any((host_b / p).exists() for p in CACHED_OUTS)
    _sh(["dvc", "pull", "-q"], host_b)
    for p in CACHED_OUTS:
        assert (host_b / p).read_bytes() == produced[p], p

    # `boxes` is always_changed (it watches the data root, which DVC cannot see): status names it and nothing else
    status = _sh(["dvc", "status"], host_b).stdout
    assert "prepare" not in status and "boxes" in status and "always changed" in status
    assert "Data and pipelines are up to date" in _sh(["dvc", "status", "prepare"], host_b).stdout
    repro = _sh(["dvc", "repro"], host_b).stdout
    assert "Stage 'prepare' didn't change, skipping" in repro
    for p in CACHED_OUTS:                                                 # boxes re-ran and wrote the same bytes
        assert (host_b / p).read_bytes() == produced[p], p
    assert _sh(["git", "status", "--porcelain", "dvc.lock"], host_b).stdout == ""
