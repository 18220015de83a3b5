"""CI metric comparison: exit 0 within tolerance, 1 on drift / missing / added keys; prints a Markdown diff."""
from __future__ import annotations

import copy
import json
import runpy
import sys
from pathlib import Path

import pytest

from scanbench.errors import ScanbenchError
from scanbench.report.compare import (
    DEFAULT_TOLERANCES,
    compare_dirs,
    compare_trees,
    flatten,
    load_tree,
    parse_tolerances,
    read_reference_file,
    tolerance_for,
)

REPO = Path(__file__).resolve().parents[1]

REFERENCE = {
    "explanations": {"effnet_lite0": {"family": "cnn", "n_images": 24, "methods": {
        "scan": {"pos_auc": 6.25, "neg_auc": 40.5, "auc_d": 34.25, "drop": 22.5, "inc": 25.0, "win": 50.0},
        "lime": {"pos_auc": 10.0, "neg_auc": 30.0, "auc_d": 20.0, "drop": 50.0, "inc": 12.5, "win": 0.0}}}},
    "scan_training": {"effnet_lite0": {"default": {"alpha": 4, "final_loss": 0.1234,
                                                   "val_confidence_area": 0.21, "target_area": 0.2}}},
    "targets": {"effnet_lite0": {"family": "cnn", "val_top1": 97.5, "n_val": 3925}},
    "ablation_p": {"effnet_lite0": {"95": {"pos_auc": 9.0, "neg_auc": 42.0, "auc_d": 33.0}}},
    "timing": {"effnet_lite0": {"scan": {"ms_per_image": 12.0, "ratio_to_gradcam": 2.0}}},
}


def _write_tree(d: Path, tree: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for stem, obj in tree.items():
        (d / f"{stem}.json").write_text(json.dumps(obj))
    return d


def _run(ref: Path, cur: Path, capsys, *extra: str) -> tuple[int, str]:
    """compare_metrics as CI runs it (`python -m scanbench.stages.compare_metrics`, in-process); returns (exit code,
    stdout + stderr)."""
    argv = ["compare_metrics.py", "--reference", str(ref), "--current", str(cur), *extra]
    old = sys.argv
    sys.argv = argv
    try:
        with pytest.raises(SystemExit) as exc:
            runpy.run_module("scanbench.stages.compare_metrics", run_name="__main__", alter_sys=True)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return exc.value.code, captured.out + captured.err


def _variant(tmp_path: Path, name: str, edit) -> Path:
    tree = copy.deepcopy(REFERENCE)
    edit(tree)
    return _write_tree(tmp_path / name, tree)


@pytest.fixture()
def ref(tmp_path):
    return _write_tree(tmp_path / "reference", REFERENCE)


def test_identical_and_within_tolerance_pass(tmp_path, ref, capsys):
    code, out = _run(ref, _write_tree(tmp_path / "same", REFERENCE), capsys)
    assert code == 0 and "No differences" in out

    def small(t):
        t["explanations"]["effnet_lite0"]["methods"]["scan"]["auc_d"] = 34.25 + 0.4   # default tol 0.5 pp
        t["scan_training"]["effnet_lite0"]["default"]["final_loss"] = 0.1234 + 0.015                          # tol 0.02
        t["timing"]["effnet_lite0"]["scan"]["ms_per_image"] = 900.0                   # timing is not compared
    code, out = _run(ref, _variant(tmp_path, "small", small), capsys)
    assert code == 0, out
    assert "| explanations/effnet_lite0/methods/scan/auc_d | 34.25 | 34.65 | +0.4 | 0.5 | yes |" in out
    assert "timing" not in out.split("\n\n")[0]


def test_drift_beyond_tolerance_fails_and_is_shown(tmp_path, ref, capsys):
    def drift(t):
        t["explanations"]["effnet_lite0"]["methods"]["lime"]["pos_auc"] = 10.0 - 0.75
        t["scan_training"]["effnet_lite0"]["default"]["val_confidence_area"] = 0.25
    cur = _variant(tmp_path, "drift", drift)
    code, out = _run(ref, cur, capsys)
    assert code == 1
    lines = out.splitlines()
    assert "| metric | reference | current | delta | tolerance | ok |" in lines
    assert lines[0].startswith("reference   : ") and lines[1].startswith("this machine: ")
    assert "| explanations/effnet_lite0/methods/lime/pos_auc | 10 | 9.25 | -0.75 | 0.5 | **NO** (drift) |" in out
    assert "scan_training/effnet_lite0/default/val_confidence_area | 0.21 | 0.25 | +0.04 | 0.02 | **NO** (drift)" in out
    # a wider tolerance for that method's metrics, and for the decoder, lets it pass
    code, _ = _run(ref, cur, capsys, "--tol", "explanations/*/methods/lime=1",
                   "--tol", "scan_training/*/val_confidence_area=0.05")
    assert code == 0
    # --abs-tol moves the default
    code, _ = _run(ref, cur, capsys, "--abs-tol", "1.0", "--tol", "scan_training=0.1")
    assert code == 0


def test_missing_added_and_changed_keys_fail(tmp_path, ref, capsys):
    code, out = _run(ref, _variant(tmp_path, "missing", lambda t: t["ablation_p"]["effnet_lite0"].pop("95")),
                     capsys)
    assert code == 1 and "ablation_p/effnet_lite0/95/auc_d | 33 | - | - | 0.5 | **NO** (missing)" not in out
    assert "| ablation_p/effnet_lite0/95/auc_d | 33 | - | - | - | **NO** (missing) |" in out

    code, out = _run(ref, _variant(tmp_path, "added", lambda t: t["ablation_p"]["effnet_lite0"].update(
        {"50": {"pos_auc": 9.0, "neg_auc": 30.0, "auc_d": 21.0}})), capsys)
    assert code == 1 and "**NO** (added)" in out

    code, out = _run(ref, _variant(tmp_path, "family", lambda t: t["targets"]["effnet_lite0"].update(
        {"family": "vit"})), capsys)
    assert code == 1 and "targets/effnet_lite0/family | cnn | vit | changed" in out

    # counts must match exactly
    code, out = _run(ref, _variant(tmp_path, "count", lambda t: t["explanations"]["effnet_lite0"].update(
        {"n_images": 25})), capsys)
    assert code == 1 and "explanations/effnet_lite0/n_images | 24 | 25 | +1 | 0 |" in out


def test_bad_input_exits_2(tmp_path, ref, capsys):
    code, out = _run(ref, tmp_path / "does-not-exist", capsys)
    assert code == 2 and out.startswith("error: metrics folder") and "does not exist" in out
    with pytest.raises(ScanbenchError):
        parse_tolerances(["no-equals-sign"])
    with pytest.raises(ScanbenchError):
        parse_tolerances(["x=-1"])


def test_flatten_and_tolerance_precedence():
    flat = flatten(REFERENCE)
    assert flat["scan_training/effnet_lite0/default/final_loss"] == 0.1234
    assert flat["explanations/effnet_lite0/methods/scan/win"] == 50.0
    tols = parse_tolerances(["explanations/*/methods/lime=2"], default=0.3)
    assert tolerance_for("explanations/effnet_lite0/methods/lime/auc_d", tols) == 2
    assert tolerance_for("explanations/effnet_lite0/methods/scan/auc_d", tols) == 0.3
    assert tolerance_for("explanations/effnet_lite0/n_images", tols) == 0
    assert tolerance_for("scan_training/effnet_lite0/default/final_loss", DEFAULT_TOLERANCES) == 0.02
    rows = compare_trees({"a": float("nan")}, {"a": float("nan")}, DEFAULT_TOLERANCES)
    assert rows[0].ok


def test_reference_file_states_the_tolerances(tmp_path, ref, capsys):
    cur = _variant(tmp_path, "drift", lambda t: t["explanations"]["effnet_lite0"]["methods"]["lime"].update(
        pos_auc=10.0 - 0.75))
    assert _run(ref, cur, capsys)[0] == 1                       # default 0.5
    (ref / "reference.yaml").write_text("tolerances:\n  '*': 1.0\n  '*/n_images': 0\n")
    assert _run(ref, cur, capsys)[0] == 0                       # the reference's own 1.0
    assert _run(ref, cur, capsys, "--abs-tol", "0.5")[0] == 1   # the command line still wins
    (ref / "reference.yaml").write_text("tolerances:\n  '*': -1\n")
    code, out = _run(ref, cur, capsys)
    assert code == 2 and "reference.yaml" in out


def test_update_reference_copies_metrics_and_records_the_machine(tmp_path, ref, capsys):
    import yaml

    (ref / "reference.yaml").write_text("made_by: hand\ntolerances:\n  '*': 1.0\n")
    new = _variant(tmp_path, "new", lambda t: t["targets"]["effnet_lite0"].update(val_top1=90.0))
    code, _ = _run(ref, new, capsys, "--update-reference")
    assert code == 0
    assert json.loads((ref / "targets.json").read_text())["effnet_lite0"]["val_top1"] == 90.0
    meta = yaml.safe_load((ref / "reference.yaml").read_text())
    assert meta["made_by"] == "hand" and meta["tolerances"] == {"*": 1.0}
    assert {"cpu", "isa_flags", "isa_pins", "versions"} <= set(meta["machine"])


COMMITTED = REPO / "reports" / "reference" / "smoke"
OTHER_CPU = REPO / "reports" / "reference" / "cross-machine"


def _copy_reference(tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(COMMITTED, tmp_path / "current"))


def test_committed_reference_catches_a_five_point_change(tmp_path, capsys):
    """CI's own check: the committed smoke reference against itself passes, and moving one AUC by 5 fails."""
    cur = _copy_reference(tmp_path)
    assert _run(COMMITTED, cur, capsys)[0] == 0
    expl = json.loads((cur / "explanations.json").read_text())
    backbone = next(iter(expl))
    expl[backbone]["methods"]["gradcam"]["auc_d"] += 5.0
    (cur / "explanations.json").write_text(json.dumps(expl))
    code, out = _run(COMMITTED, cur, capsys)
    assert code == 1 and f"explanations/{backbone}/methods/gradcam/auc_d" in out and "**NO** (drift)" in out


def _cross_machine_pairs() -> list[str]:
    """The committed pairs; a missing or empty folder gives one case that fails, never zero cases (a skip)."""
    pairs = sorted(p.name for p in OTHER_CPU.iterdir() if p.is_dir()) if OTHER_CPU.is_dir() else []
    return pairs or ["(none committed)"]


@pytest.mark.parametrize("pair", _cross_machine_pairs())
def test_reference_holds_across_cpus(pair, capsys):
    """One commit's smoke metrics from two CPUs (reports/reference/cross-machine/<pair>/, see its README): the
    AVX-512 (pinned) reference accepts the AVX2 machine's metrics with its own tolerances."""
    for side in ("avx512-pinned", "avx2"):
        assert (OTHER_CPU / pair / side).is_dir(), f"no committed cross-machine reference: {OTHER_CPU / pair / side}"
    code, out = _run(OTHER_CPU / pair / "avx512-pinned", OTHER_CPU / pair / "avx2", capsys)
    assert code == 0, out


def test_interval_fields_get_the_auc_tolerance(tmp_path, capsys):
    """explanations.json's [lo, hi] intervals flatten to .../<name>_ci95/0 and /1 and take the committed
    reference's AUC-class tolerance (1.0), not the Drop tolerance: a 0.8 move passes, a 5-point move fails, and
    a field or method the reference lacks (e.g. the centre prior before the reference is regenerated) fails."""
    from scanbench.report.compare import read_reference_file

    tols = parse_tolerances([], base=read_reference_file(COMMITTED)["tolerances"])
    for field in ("auc_d_ci95", "auc_d_minus_scan_ci95", "auc_d_minus_centre_ci95"):
        for end in ("0", "1"):
            assert tolerance_for(f"explanations/effnet_lite0/methods/gradcam/{field}/{end}", tols) == 1.0
    assert tolerance_for("explanations/effnet_lite0/methods/gradcam/drop", tols) == 0.05
    assert tolerance_for("explanations/effnet_lite0/methods/gradcam/auc_d_ci95/0", DEFAULT_TOLERANCES) == 0.5

    def with_intervals(shift: float):
        def edit(t):
            for m in t["explanations"]["effnet_lite0"]["methods"].values():
                m["auc_d_minus_scan_ci95"] = [-4.0 + shift, 2.5]
        return edit

    ref = _variant(tmp_path, "ref", with_intervals(0.0))
    (ref / "reference.yaml").write_text("tolerances:\n  '*': 1.0\n  '*_ci95': 1.0\n  '*/n_images': 0\n")
    assert _run(ref, _variant(tmp_path, "small", with_intervals(0.8)), capsys)[0] == 0
    code, out = _run(ref, _variant(tmp_path, "big", with_intervals(5.0)), capsys)
    assert code == 1 and "methods/lime/auc_d_minus_scan_ci95/0 | -4 | 1 | +5 | 1 | **NO** (drift)" in out
    code, out = _run(ref, _variant(tmp_path, "centre", lambda t: (with_intervals(0.0)(t), t["explanations"][
        "effnet_lite0"]["methods"].update(centre={"auc_d": 27.5}))), capsys)
    assert code == 1 and "| explanations/effnet_lite0/methods/centre/auc_d | - | 27.5 | - | - | **NO** (added) |" in out


def test_committed_smoke_reference_is_keyed_by_name_and_its_summary_repeats_the_detail():
    """The reference CI compares with has the shapes the report stage writes: objects all the way
    down (DVC prints nothing for a list of records), summary.json equal to what build_summary makes of the rest."""
    from scanbench.report.metrics import build_summary

    ref = REPO / "reports" / "reference" / "smoke"
    tree = {p.stem: json.loads(p.read_text()) for p in ref.glob("*.json")}
    assert {"summary", "scan_training", "explanations"} <= set(tree) and "timing" not in tree
    for stem, obj in tree.items():
        assert isinstance(obj, dict), stem
    assert all(isinstance(layers, dict) and "default" in layers for layers in tree["scan_training"].values())
    summary = dict(tree["summary"])
    assert set(summary.pop("claims")) and summary == build_summary(tree["explanations"], tree["scan_training"])
    flat = load_tree(ref)
    assert tolerance_for("summary/scan_held_out_skill/effnet_lite0", parse_tolerances(
        [], base=read_reference_file(ref)["tolerances"])) == 0.02
    assert compare_dirs(ref, ref, parse_tolerances([], base=read_reference_file(ref)["tolerances"]))
    assert all(r.status == "same" for r in compare_trees(flat, flat, DEFAULT_TOLERANCES))
