"""DVC's own tools: `dvc exp run -S alpha=8` sets SCAN's alpha in one place; a key no stage reads is
refused with one line (by every stage's load_params, and by the check_params stage that tracks the whole file)."""
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from scanbench.config import MOVED_PARAMS, check_param_keys, load_params
from scanbench.errors import ScanbenchError
from scanbench.explainers.base import validate_method_params

REPO = Path(__file__).resolve().parents[1]
PROFILES = ("smoke", "default", "paper")


def profile(name):
    return yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name", PROFILES)
def test_alpha_and_p_are_top_level_and_nowhere_else(name):
    params = profile(name)
    assert params["alpha"] == 4 and params["p"] == 95
    assert "alpha" not in params["scan"] and "p_infer" not in params["scan"]
    assert params["ablation"]["base_alpha"] == 4          # the ablations' own alpha stays independent


@pytest.mark.parametrize("name", PROFILES)
def test_profiles_hold_only_known_keys(name):
    keys = check_param_keys(profile(name))
    assert {"alpha", "p", "scan.lr", "explain.lime.num_samples", "targets.vit.epochs"} <= set(keys)


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p.update(alfa=8), r"unknown key 'alfa' \(did you mean alpha\?\)"),
    (lambda p: p["scan"].update(stpes=3), r"unknown key 'scan.stpes' \(did you mean scan.steps\?\)"),
    (lambda p: p["targets"]["vit"].update(dropout=0.1), "unknown key 'targets.vit.dropout'"),
    # explain.<name> holds a method's settings only for a method the params run
    (lambda p: p["explain"].update(gradcamz={}), "unknown key 'explain.gradcamz'"),
    (lambda p: p["explain"].update(gradcam=3), "explain.gradcam is a section"),
    (lambda p: p.update(data="../elsewhere"), "data is a section"),
    (lambda p: p["scan"].update(alpha=8), "scan.alpha moved to the top-level key 'alpha'"),
    (lambda p: p["scan"].update(p_infer=90), "scan.p_infer moved to the top-level key 'p'"),
])
def test_unknown_keys_are_refused_naming_the_key(mutate, match):
    params = profile("default")
    check_param_keys(params)
    mutate(params)
    with pytest.raises(ScanbenchError, match=match) as err:
        check_param_keys(params)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("mutate, match", [
    (lambda p: p["explain"]["lime"].update(kernel_width=3), "unknown key 'explain.lime.kernel_width'"),
    (lambda p: p["explain"].update(gradcam={"layer": "x"}), "unknown key 'explain.gradcam.layer'"),
    (lambda p: p["explain"]["lrp"].update(rul="epsilon"), r"unknown key 'explain.lrp.rul' \(did you mean "
                                                          r"explain.lrp.rule\?\)"),
    (lambda p: p["explain"]["rise"].update(p1=2), r"explain.rise.p1 must be in \(0, 1\]"),
])
def test_method_settings_are_the_methods_own(mutate, match):
    """The keys of explain.<method> are the method's settings, declared in its own file: the schema takes any key
    there, and validate_method_params (check_params, `python -m scanbench.profile`, and building the method)
    refuses one the method does not declare, naming it."""
    params = profile("default")
    validate_method_params(params)
    mutate(params)
    check_param_keys(params)
    with pytest.raises(ScanbenchError, match=match) as err:
        validate_method_params(params)
    assert "\n" not in str(err.value)


def test_load_params_refuses_unknown_keys(tmp_path):
    """Every stage loads params through load_params, so whichever stage runs first refuses the file."""
    params = profile("smoke")
    params["alfa"] = 8
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ScanbenchError, match="unknown key 'alfa'"):
        load_params(tmp_path / "params.yaml")
    del params["alfa"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_params(tmp_path / "params.yaml")["alpha"] == 4


def _stage_param_keys() -> dict[str, list[str]]:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    out = {}
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        keys = []
        for entry in body.get("params", []):
            keys += list(entry) if isinstance(entry, dict) else [entry]
        out[name] = keys
    return out


def test_every_known_key_is_read_by_a_stage_and_check_params_tracks_the_file():
    """'Known' means 'some stage lists it' (itself or its section): the schema cannot grow keys no stage reads.
    check_params tracks params.yaml whole, so a new key (`-S +alfa=8`) runs it even when no other stage lists it."""
    stages = _stage_param_keys()
    assert stages["check_params"] == ["params.yaml"]
    listed = [re.sub(r"\$\{[^}]+\}", "*", k) for name, keys in stages.items() if name != "check_params" for k in keys]
    for name in PROFILES:
        unread = [k for k in check_param_keys(profile(name))
                  if not any(re.fullmatch(re.escape(pat).replace(r"\*", "[^.]+") + r"(\..+)?", k) for pat in listed)
                  and not any(pat.startswith(k + ".") for pat in listed)]      # a section some of whose keys are read
        assert not unread, f"{name}: keys no stage lists in dvc.yaml: {unread}"
    # SCAN's stages list the top-level alpha / p, and no stage lists the old keys
    for old in MOVED_PARAMS:
        assert old not in listed
    assert "alpha" in stages["train_scan"] and "p" in stages["explain_scan"] and "p" in stages["diagnose_scan"]


def test_train_scan_matrix_takes_the_top_level_alpha():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    assert spec["stages"]["train_scan"]["matrix"]["alpha"] == ["${alpha}"]


def _run_check(tmp_path, params):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run([sys.executable, "-m", "scanbench.stages.check_params"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_params_stage_one_line(tmp_path):
    res = _run_check(tmp_path, profile("smoke"))
    assert res.returncode == 0, res.stderr
    bad = profile("smoke")
    bad["alfa"] = 8
    res = _run_check(tmp_path, bad)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: params: unknown key 'alfa' (did you mean alpha?)")
    bad = profile("smoke")
    bad["explain"]["lime"]["kernel_width"] = 3       # a key LIME's settings do not declare
    res = _run_check(tmp_path, bad)
    assert res.returncode == 2 and res.stderr.count("\n") == 1
    assert res.stderr.startswith("error: params: unknown key 'explain.lime.kernel_width'")


@pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="needs dvc and git")
def test_dvc_exp_run_sets_alpha_and_refuses_a_new_key(tmp_path):
    """What DVC users type: `-S alpha=8` sets the existing key; `-S +alfa=8` adds one and the run fails naming
    it (without that stage it 'ran' an experiment that re-ran nothing). Only the check_params stage is run here."""
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copyfile(REPO / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(REPO / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    shutil.copyfile(REPO / "profiles" / "smoke.yaml", repo / "params.yaml")
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t",
           "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}

    def sh(*cmd):
        return subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=300)

    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        assert sh(*cmd).returncode == 0, cmd
    ok = sh("dvc", "exp", "run", "-S", "alpha=8", "check_params")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert yaml.safe_load((repo / "params.yaml").read_text())["alpha"] == 8
    bad = sh("dvc", "exp", "run", "-S", "+alfa=8", "check_params")
    assert bad.returncode != 0
    assert "error: params: unknown key 'alfa' (did you mean alpha?)" in bad.stdout + bad.stderr
