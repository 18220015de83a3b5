"""Stage scripts turn bad input into one clear line on stderr and exit code 2, writing nothing."""
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def run(args, cwd, env_extra=None):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env_extra or {})}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def write_params(tmp_path, mutate):
    params = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
    mutate(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))


def test_prepare_missing_data_root(tmp_path):
    write_params(tmp_path, lambda p: p["data"].update(root=str(tmp_path / "no_such_dir")))
    res = run(["-m", "scanbench.stages.prepare"], tmp_path)
    assert res.returncode == 2
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: data root") and "data.root" in last
    assert not (tmp_path / "data" / "manifest.csv").exists()


def test_bad_alpha_and_unknown_backbone(tmp_path):
    write_params(tmp_path, lambda p: p.update(alpha=0))
    res = run(["-m", "scanbench.stages.train_scan", "--backbone", "effnet_lite0", "--layer", "default",
               "--out", str(tmp_path / "m")], tmp_path)
    assert res.returncode == 2 and "alpha must be > 0 (got 0)" in res.stderr.strip().splitlines()[-1]
    write_params(tmp_path, lambda p: None)
    res = run(["-m", "scanbench.stages.features", "--backbone", "resnet9000"], tmp_path)
    assert res.returncode == 2 and "unknown backbone 'resnet9000'" in res.stderr.strip().splitlines()[-1]


def test_unknown_layer(tmp_path):
    write_params(tmp_path, lambda p: None)
    res = run(["-m", "scanbench.stages.features", "--backbone", "effnet_lite0", "--layer", "net.nope"], tmp_path)
    assert res.returncode == 2 and "has no layer 'net.nope'" in res.stderr.strip().splitlines()[-1]


def test_ablate_p_takes_no_setting(tmp_path):
    """P sweeps ablation.percentiles in one run; a --setting for it is refused before any work."""
    write_params(tmp_path, lambda p: None)
    res = run(["-m", "scanbench.stages.ablate", "--backbone", "effnet_lite0", "--kind", "p", "--setting", "95",
               "--out-dir", str(tmp_path / "out")], tmp_path)
    assert res.returncode == 2 and "ablation.percentiles" in res.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()
