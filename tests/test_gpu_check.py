"""benchmarks/gpu_check.sh: refuses in one line without CUDA; its CPU dry run goes through every part
(a clone on the smoke profile with `dvc dag`/`dvc status`, the paper-width decoder step, SCAN and Grad-CAM on a
random ViT-B/16) and writes the report; a part without a record is reported as not done, never as a number."""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_check.sh"


def _script(args: list[str], **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=REPO, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO / "src"), **env})


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_refuses_without_cuda_in_one_line(tmp_path):
    res = _script(["--out", str(tmp_path / "out")], CUDA_VISIBLE_DEVICES="")   # no visible GPU, even on a GPU box
    assert res.returncode == 2
    assert res.stdout == "" and len(res.stderr.strip().splitlines()) == 1
    assert res.stderr.startswith("gpu_check: no CUDA device here") and "--cpu-dry-run" in res.stderr
    assert not (tmp_path / "out").exists()


def test_unknown_argument_is_one_line():
    res = _script(["--gpu"])
    assert res.returncode == 2 and res.stderr.strip() == ("gpu_check: unknown argument '--gpu' (use --cpu-dry-run, "
                                                          "--out DIR, --device DEV)")


FAKE_DVC = """#!/usr/bin/env bash
# stands in for dvc in the clone: records what it was asked on which params; `repro` makes the smoke reference's
# metrics the run's, so that compare_metrics finds no difference
echo "$1 $(grep '^profile:' params.yaml) $(grep -c '^  device: cpu' params.yaml)" >> "$FAKE_DVC_LOG"
if [ "$1" = repro ]; then mkdir -p reports/metrics && cp reports/reference/smoke/*.json reports/metrics/; fi
"""


def test_full_path_with_a_stand_in_dvc_and_parts_out_of_time(tmp_path):
    """The non-dry path on the CPU (--device cpu): the clone is switched to the smoke profile on the chosen device,
    `dvc repro` runs there and its metrics are compared with the reference; a part that runs past its time limit is
    reported as not measured and the script exits 1."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dvc").write_text(FAKE_DVC)
    (bin_dir / "dvc").chmod(0o755)
    log = tmp_path / "dvc.log"
    res = _script(["--device", "cpu", "--out", str(tmp_path / "out")], PATH=f"{bin_dir}:{os.environ['PATH']}",
                  FAKE_DVC_LOG=str(log), GPU_CHECK_DECODER_S="1", GPU_CHECK_VIT_S="1")
    assert res.returncode == 1, res.stdout + res.stderr
    assert log.read_text() == "repro profile: smoke 1\n"
    assert "decoder part failed or timed out" in res.stderr and "vit part failed or timed out" in res.stderr
    record = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    dag = record["dag"]
    assert dag["repro_rc"] == 0 and dag["compare_rc"] == 0 and "metrics compared, 0 changed" in dag["compare_summary"]
    assert record["decoder"] is None and record["vit"] is None
    text = (tmp_path / "out" / "gpu_check.md").read_text()
    assert "compute.device = cpu: rc 0" in text and text.count("Not measured") == 2 and "No differences" in text


def test_report_says_a_missing_part_was_not_measured(tmp_path):
    mod = _module()
    text = mod.report(dag=None, decoder=None, vit=None)
    assert text.count("Not measured") == 2 and "images/s" not in text
    assert mod.main(["report", "--out", str(tmp_path / "out"), "--vit", str(tmp_path / "none.json")]) == 1
    assert json.loads((tmp_path / "out" / "gpu_check.json").read_text()) == {"dag": None, "decoder": None, "vit": None}


@pytest.mark.slow   # ViT-B/16 at 224 px on a CPU, a clone and two DVC commands: about a minute on 2 cores
@pytest.mark.skipif(shutil.which("dvc") is None, reason="needs the dvc command-line tool")
def test_cpu_dry_run_goes_through_every_part(tmp_path):
    res = _script(["--cpu-dry-run", "--out", str(tmp_path)])
    assert res.returncode == 0, res.stdout + res.stderr
    record = json.loads((tmp_path / "gpu_check.json").read_text())
    assert record["dag"]["dry_run"] and record["dag"]["dag_rc"] == 0 and record["dag"]["status_rc"] == 0
    decoders = record["decoder"]["decoders"]
    assert set(decoders) == {"cnn", "vit"}
    assert all(r["out_size"] == 224 and r["images_per_s"] > 0 for r in decoders.values())
    methods = record["vit"]["methods"]
    assert set(methods) == {"scan", "gradcam"} and all(m["ms_per_image"] > 0 for m in methods.values())
    text = (tmp_path / "gpu_check.md").read_text()
    assert "**CPU dry run**" in text and "| scan |" in text and "| gradcam |" in text and "Not measured" not in text
