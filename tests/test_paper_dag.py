"""The paper profile's DAG is valid offline. In a throw-away copy of the project (code, dvc.yaml, the paper
profile as params.yaml; no data, no weights, no network), `dvc dag` and `dvc status` work, and `dvc repro` stops at
its first data stage with the one-line "provide the data" message (exit 2), not a traceback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PAPER = yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())

pytestmark = pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None,
                                reason="needs the dvc and git command-line tools")


def _sh(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONPATH": str(cwd / "src"), "HF_HUB_OFFLINE": "1",
           # no route out: any attempt to reach the network fails at once instead of passing by luck
           "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def paper_copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("paper")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for folder in ("src", "profiles"):
        shutil.copytree(REPO / folder, dst / folder, ignore=ignore)
    shutil.copy(REPO / "dvc.yaml", dst / "dvc.yaml")
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert _sh(cmd, dst).returncode == 0
    res = _sh([sys.executable, "-m", "scanbench.profile", "paper"], dst)
    assert res.returncode == 0, res.stderr
    if Path(PAPER["data"]["root"]).exists():   # a machine that has ImageNet there: point at a root that is absent
        params = yaml.safe_load((dst / "params.yaml").read_text())
        params["data"]["root"] = str(dst / "no_imagenet_here")
        (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dst


def test_dag_lists_the_paper_backbones_stages(paper_copy):
    res = _sh(["dvc", "dag", "--dot"], paper_copy)
    assert res.returncode == 0, res.stderr
    for backbone in PAPER["backbones"]:
        assert f"targets@{backbone}" in res.stdout and f"explain_scan@{backbone}" in res.stdout
    assert "prepare" in res.stdout and "report" in res.stdout


def test_status_works_offline(paper_copy):
    res = _sh(["dvc", "status"], paper_copy)
    assert res.returncode == 0, res.stderr
    assert "prepare:" in res.stdout and "ERROR" not in res.stdout + res.stderr


def test_repro_stops_at_the_first_data_stage_in_one_line(paper_copy):
    res = _sh(["dvc", "repro"], paper_copy)
    out = res.stdout + res.stderr
    assert res.returncode != 0 and "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    assert "does not exist: provide the data there" in errors[0] and "set data.root" in errors[0]
    assert "failed to reproduce 'prepare'" in out and "exited with 2" in out
    assert not (paper_copy / "data" / "manifest.csv").exists()
