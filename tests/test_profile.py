"""`python -m scanbench.profile NAME --data ROOT --backbones ...`: one command from a profile to params for your own
data, deriving what must agree (families, ablation backbones, whether the teacher runs) and keeping comments."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scanbench.backbones import validate_backbone_params
from scanbench.config import validate_params
from scanbench.errors import ScanbenchError
from scanbench.profile import use_profile

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def repo(tmp_path):
    shutil.copytree(REPO / "profiles", tmp_path / "profiles")
    (tmp_path / "mydata" / "train").mkdir(parents=True)
    return tmp_path


def _with_method_sections(profile: dict) -> dict:
    """The profile's values plus `explain.<method>: {}` for each method of its explain and sanity stages without a
    section (every method the profiles leave out has no settings)."""
    explain = profile["explain"]
    runs = {*[m for ms in explain["baselines"].values() for m in ms],
            *[m for ms in profile["sanity"]["methods"].values() for m in ms]}
    return {**profile, "explain": {**explain, **{m: {} for m in runs if m not in explain}}}


@pytest.mark.parametrize("name", ["smoke", "default", "paper"])
def test_profile_alone_is_the_profile_and_the_methods_sections(repo, name):
    """The profile as written, plus one `<method>: {...}` line (the method's declared defaults) at the end of the
    explain block for each method it runs without a section: each explain stage's DVC params key exists. A profile
    that names every section is copied byte for byte."""
    src = repo / "profiles" / f"{name}.yaml"
    dst, changes = use_profile(name, repo)
    written, profile = dst.read_text(), src.read_text()
    assert yaml.safe_load(written) == _with_method_sections(yaml.safe_load(profile))
    added = [line for line in written.splitlines() if line not in profile.splitlines()]
    assert added and all(line.startswith("  ") and line.endswith(": {}") for line in added)
    assert [line for line in written.splitlines() if line in profile.splitlines()] == profile.splitlines()
    assert changes == [f"explain.<method> from the methods' defaults (their stages track it): "
                       f"{', '.join(line.strip()[:-4] for line in added)}"]
    src.write_text(written)
    dst, changes = use_profile(name, repo)
    assert dst.read_text() == written and changes == []


def test_a_method_without_a_section_gets_its_defaults(repo):
    params = yaml.safe_load((repo / "profiles" / "smoke.yaml").read_text())
    del params["explain"]["lime"]
    (repo / "profiles" / "smoke.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dst, _ = use_profile("smoke", repo)
    assert yaml.safe_load(dst.read_text())["explain"]["lime"] == {"num_samples": 1000, "batch_size": 50}
    del params["explain"]["centre"]     # its sigma has no default: the profile must state it
    (repo / "profiles" / "smoke.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(ScanbenchError, match=r"explain\.centre\.sigma is missing"):
        use_profile("smoke", repo)


@pytest.mark.parametrize("name", ["smoke", "default"])
def test_cnn_only_on_own_data_derives_the_rest(repo, name):
    dst, changes = use_profile(name, repo, data_root="mydata", backbones=["effnet_lite0"])
    params = yaml.safe_load(dst.read_text())
    base = _with_method_sections(yaml.safe_load((repo / "profiles" / f"{name}.yaml").read_text()))
    assert params["data"]["root"] == "mydata"
    assert params["backbones"] == ["effnet_lite0"]
    assert params["families"] == {"cnn": ["effnet_lite0"], "vit": []}
    assert params["ablation"]["backbones"] == [b for b in base["ablation"]["backbones"] if b == "effnet_lite0"]
    validate_params(params)
    validate_backbone_params(params)
    assert any("teacher stage: skips" in c for c in changes)
    # nothing else moved: every other section equal to the profile's, nulls still nulls
    for key in base:
        if key not in ("data", "backbones", "families", "ablation"):
            assert params[key] == base[key], key
    assert {k: v for k, v in params["ablation"].items() if k != "backbones"} == \
        {k: v for k, v in base["ablation"].items() if k != "backbones"}
    # the profile's comments survive (the file stays documented)
    comments = [line for line in (repo / "profiles" / f"{name}.yaml").read_text().splitlines()
                if line.lstrip().startswith("#")]
    assert all(c in dst.read_text() for c in comments)


def test_vit_only_keeps_the_teacher(repo):
    _, changes = use_profile("smoke", repo, backbones=["vit_tiny_convstem"])
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["families"] == {"cnn": [], "vit": ["vit_tiny_convstem"]}
    assert params["ablation"]["backbones"] == ["vit_tiny_convstem"]
    assert any("teacher stage: runs" in c for c in changes)


def test_bad_arguments_are_one_line(repo):
    with pytest.raises(ScanbenchError, match="no such directory"):
        use_profile("default", repo, data_root="nope")
    with pytest.raises(ScanbenchError, match="unknown backbone"):
        use_profile("default", repo, backbones=["resnet9000"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run([sys.executable, "-m", "scanbench.profile", "default", "--data", "nope"], cwd=repo,
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        "error: --data nope: no such directory (relative paths are from the repo root)"]
    assert not (repo / "params.yaml").exists()


def test_teacher_stage_skips_when_nothing_is_trained(repo):
    """No backbone trained in the pipeline: the teacher stage writes only its marker, touching no image."""
    use_profile("smoke", repo, data_root="mydata", backbones=["effnet_lite0"])
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-m", "scanbench.stages.teacher", "--manifest", "no_manifest.csv"],
                         cwd=repo, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in (repo / "cache" / "teacher").iterdir()) == ["meta.json"]
    assert "skipped" in (repo / "cache" / "teacher" / "meta.json").read_text()


def test_profile_says_whether_the_head_stage_fits_heads(repo):
    """Derived like the teacher's line: from the backbones (timm's pretrained_cfg) and the data's class folders."""
    for cls in ("apples", "frogs"):
        (repo / "mydata" / "train" / cls).mkdir()
    _, changes = use_profile("smoke", repo, data_root="mydata", backbones=["effnet_lite0"])
    line = [c for c in changes if c.startswith("head stage:")]
    assert line == [f"head stage: fits a linear probe for effnet_lite0 (effnet_lite0: 2 of the data's 2 classes are "
                    f"not ImageNet classes; from the 2 class folders under {repo / 'mydata' / 'train'})"]
    wnids = repo / "wnids" / "train"
    for cls in ("n01440764", "n02102040"):
        (wnids / cls).mkdir(parents=True)
    _, changes = use_profile("smoke", repo, data_root="wnids", backbones=["effnet_lite0", "vit_tiny_convstem"])
    assert any(c.startswith("head stage: skips (ImageNet heads and ImageNet classes") for c in changes)
    # the paper's backbones, its data root absent here: DINO needs a head whatever the classes
    _, changes = use_profile("paper", repo, backbones=["vgg16", "vit_base_patch16_224.dino"])
    line = [c for c in changes if c.startswith("head stage:")][0]
    assert line.startswith("head stage: fits a linear probe for vit_base_patch16_224.dino (vit_base_patch16_224.dino: "
                           "vit_base_patch16_224.dino has no ImageNet classifier (timm num_classes=0)")
    assert "vgg16" not in line.split("(")[0]


@pytest.mark.parametrize("edit, message", [
    (lambda p: p["explain"]["baselines"].update(cnn=["gradcm"]),
     "explain.baselines.cnn lists unknown method 'gradcm' (did you mean gradcam?)"),
    (lambda p: p["scan"].update(layers=["defualt"]),
     "scan.layers: backbone effnet_lite0 has no layer 'defualt'"),
    (lambda p: p["ablation"].update(layers=["default", "alt7"]),
     "ablation.layers: backbone vit_hybrid_lite0 has no layer 'alt7'"),
])
def test_the_profile_command_checks_every_name_before_writing(repo, edit, message):
    """`python -m scanbench.profile` makes the check_params stage's checks: a misspelt name is one line naming its
    key, and params.yaml is not written."""
    path = repo / "profiles" / "default.yaml"
    profile = yaml.safe_load(path.read_text())
    edit(profile)
    path.write_text(yaml.safe_dump(profile))
    with pytest.raises(ScanbenchError) as info:
        use_profile("default", repo)
    assert str(info.value).startswith(message), str(info.value)
    assert not (repo / "params.yaml").exists()


def test_switching_away_from_the_committed_run_says_what_it_replaces_and_how_back(capsys):
    from scanbench.profile import replaces_note

    smoke = replaces_note("smoke")
    assert "replaces dvc.lock, reports/ of the committed default run" in smoke and "results/smoke" not in smoke
    assert "`git checkout dvc.lock reports && python -m scanbench.profile default`" in smoke
    own = replaces_note("default")   # the default profile on other data: its results tree is the committed one
    assert "results/default/" in own and "git checkout dvc.lock reports results/default" in own
