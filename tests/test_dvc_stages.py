"""dvc.lock holds only stages dvc.yaml defines, the expansion of dvc.yaml's foreach/matrix names matches DVC's, and
the rebuild hint of a damaged output names a stage that exists."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch
import yaml

from scanbench.errors import ScanbenchError
from scanbench.io import dvc_stages, first_sentence, load_npz, load_torch, producing_stage

REPO = Path(__file__).resolve().parents[1]


def test_every_dvc_lock_stage_is_one_dvc_yaml_defines():
    defined = dvc_stages(REPO / "dvc.yaml", REPO / "params.yaml")
    assert defined, "dvc.yaml could not be expanded"
    locked = (yaml.safe_load((REPO / "dvc.lock").read_text()) or {}).get("stages") or {}
    stale = sorted(set(locked) - set(defined))
    assert not stale, f"dvc.lock holds stages dvc.yaml does not define: {stale}"


@pytest.mark.skipif(shutil.which("dvc") is None, reason="dvc not installed")
def test_expansion_matches_dvc_stage_list():
    res = subprocess.run(["dvc", "stage", "list", "--all", "--name-only"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    if res.returncode != 0:
        pytest.skip(f"dvc stage list failed: {res.stderr[-300:]}")
    assert set(dvc_stages(REPO / "dvc.yaml", REPO / "params.yaml")) == set(res.stdout.split())


def _project(folder: Path) -> None:
    (folder / "params.yaml").write_text(yaml.safe_dump({
        "profile": "p", "alpha": 4, "flag": True, "backbones": ["cnnx", "vitx"], "layers": ["default", "alt1"],
        "pairs": {"a": 1, "b": 2}, "rows": [{"x": 1}, {"x": 2}]}))
    (folder / "dvc.yaml").write_text(yaml.safe_dump({"stages": {
        "plain": {"cmd": "x", "outs": ["results/${profile}/plain.json"]},
        "each": {"foreach": "${backbones}", "do": {"cmd": "x", "outs": ["features/${item}"]}},
        "bykey": {"foreach": "${pairs}", "do": {"cmd": "x", "outs": [{"out/${key}.txt": {"cache": False}}]}},
        "rows": {"foreach": "${rows}", "do": {"cmd": "x"}},
        "bools": {"foreach": [True, 1.5], "do": {"cmd": "x"}},
        "train": {"matrix": {"backbone": "${backbones}", "alpha": ["${alpha}"], "layer": "${layers}",
                             "on": ["${flag}"]},
                  "cmd": "x", "outs": ["models/${item.backbone}/${item.layer}"]},
        "grid": {"matrix": {"b": ["cnnx"], "cfg": [{"k": 1}, [2]]}, "cmd": "x"},
    }}, sort_keys=False))


def test_expansion_names_stages_as_dvc_does(tmp_path):
    _project(tmp_path)
    stages = dvc_stages(tmp_path / "dvc.yaml", tmp_path / "params.yaml")
    assert set(stages) == {
        "plain", "each@cnnx", "each@vitx", "bykey@a", "bykey@b", "rows@0", "rows@1", "bools@true", "bools@1.5",
        "train@cnnx-4-default-True", "train@cnnx-4-alt1-True", "train@vitx-4-default-True",
        "train@vitx-4-alt1-True", "grid@cnnx-cfg0", "grid@cnnx-cfg1"}
    assert stages["plain"] == ["results/p/plain.json"]
    assert stages["bykey@b"] == ["out/b.txt"]
    assert stages["train@vitx-4-alt1-True"] == ["models/vitx/alt1"]
    assert dvc_stages(tmp_path / "missing.yaml") is None


def test_rebuild_hint_skips_stages_dvc_yaml_no_longer_defines(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _project(tmp_path)
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {
        "old_explain@cnnx-scan": {"cmd": "x", "outs": [{"path": "features/cnnx/x.npz", "md5": "0"}]},
        "older@vitx": {"cmd": "x", "outs": [{"path": "maps/vitx/m.npz", "md5": "0"}]}}}))
    path = Path("features/cnnx/x.npz")          # dvc.yaml's each@cnnx writes it; the lock's entry is stale
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    assert producing_stage(path) == "each@cnnx"
    with pytest.raises(ScanbenchError, match=r"rebuild it with `dvc repro -f each@cnnx`"):
        load_npz(path)
    orphan = Path("maps/vitx/m.npz")           # only a stale lock entry lists it, and no dvc.yaml stage
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"")
    assert producing_stage(orphan) is None
    for stage, hint in (("older@vitx", r"by re-running the stage that writes it \(`dvc stage list`"),
                        ("train@vitx-4-default-True", r"with `dvc repro -f train@vitx-4-default-True`"),
                        ("train@vitx-9-gone", r"with `dvc repro -f <the train stage that writes it>`"),
                        ("gone", r"by re-running the stage that writes it")):
        with pytest.raises(ScanbenchError, match=hint):
            load_npz(orphan, stage=stage)


def test_damaged_checkpoint_message_is_whole_sentences(tmp_path):
    import pandas as pd

    torch.save({"x": pd.DataFrame({"a": [1]})}, tmp_path / "evil.pt")
    with pytest.raises(ScanbenchError) as info:
        load_torch(tmp_path / "evil.pt", stage="train_scan")
    msg = str(info.value)
    assert "\n" not in msg and "\x1b" not in msg
    assert "(UnpicklingError: Unsupported global: GLOBAL pandas.DataFrame was not an allowed global by default)" in msg
    good = tmp_path / "good.pt"
    torch.save({"w": torch.zeros(1000)}, good)
    good.write_bytes(good.read_bytes()[:300])
    with pytest.raises(ScanbenchError, match=r"\(RuntimeError: PytorchStreamReader failed reading zip archive: "
                                             r"failed finding central directory\): "):
        load_torch(good)


def test_first_sentence():
    assert first_sentence("One thing failed. Then more.\nsecond line") == "One thing failed"
    assert first_sentence("\n  \nValue 3.5 is not e.g. allowed") == "Value 3.5 is not e.g. allowed"
    long = "word " * 100 + "end. tail"
    assert first_sentence(long) == ("word " * 100 + "end").strip()
    assert first_sentence("") == ""
