"""Report stage: metric aggregation (Win% by hand, with a tie), tables beside the paper's values, the
paper values themselves, and the stage script end to end on a fake results tree."""
from __future__ import annotations

import json
import math
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scanbench.errors import ScanbenchError
from scanbench.report import Results, build_metrics, collect_results, restrict_to_params, win_rates
from scanbench.report.tables import build_tables, load_paper_values, table7, table_markdown, write_tables

REPO = Path(__file__).resolve().parents[1]
PAPER_TXT = REPO.parent / "shared" / "paper" / "SCAN-paper.txt"
FRACTIONS = [round(0.1 * i, 1) for i in range(10)]

VIT, CNN = "vit_tiny_convstem", "effnet_lite0"
# Per-image Drop% for the CNN, chosen so Win% is easy by hand (4 images):
#   image 0: scan best (10); random 5 would beat it   image 1: gradcam best (40)
#   image 2: scan and gradcam tie at 0                image 3: layercam best (10)
CNN_DROPS = {"scan": [10, 50, 0, 30], "gradcam": [20, 40, 0, 30], "layercam": [30, 60, 5, 10],
             "gradcam++": [90, 90, 90, 90], "xgradcam": [80, 85, 70, 60], "lime": [50, 50, 50, 50],
             "rise": [60, 70, 80, 90], "random": [5, 95, 95, 95]}
CNN_WIN = {"scan": 50.0, "gradcam": 50.0, "layercam": 25.0, "gradcam++": 0.0, "xgradcam": 0.0, "lime": 0.0,
           "rise": 0.0, "random": 25.0}
# (pos_auc, neg_auc) per method, fair variant
CNN_AUCS = {"scan": (6.1, 40.2), "gradcam": (8.0, 35.5), "layercam": (7.0, 39.0), "gradcam++": (7.5, 37.9),
            "xgradcam": (9.0, 33.3), "lime": (10.0, 30.0), "rise": (9.5, 28.0), "random": (20.0, 20.5)}
VIT_AUCS = {"scan": (15.0, 45.0), "raw_attention": (25.0, 40.0), "rollout": (22.0, 44.0),
            "transformer_attribution": (18.0, 47.0), "gradcam": (30.0, 38.0), "ag_cam": (16.0, 41.0),
            "lime": (19.0, 42.0), "rise": (21.0, 39.5), "random": (30.0, 30.2)}


def _curve(auc: float) -> list[float]:
    return [auc * 1.1] * len(FRACTIONS)


def _variant(pos: float, neg: float, shift: float = 0.0) -> dict:
    pos, neg = pos + shift, neg + shift / 2
    return {"pos_curve": _curve(pos), "neg_curve": _curve(neg), "pos_auc": pos, "neg_auc": neg,
            "auc_d": neg - pos, "pos_auc_ci": [pos - 1.5, pos + 1.25], "neg_auc_ci": [neg - 2, neg + 2],
            "auc_d_ci": [neg - pos - 3, neg - pos + 3]}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def make_results_tree(root: Path, with_sanity: bool = True, with_ablation: bool = True) -> Path:
    """A results/ tree as the earlier stages write it (docs: file layout), with hand-set values."""
    res = root / "results"
    for b, family, aucs in ((CNN, "cnn", CNN_AUCS), (VIT, "vit", VIT_AUCS)):
        _write(res / "targets" / f"{b}.json", {"backbone": b, "family": family,
                                               "val_top1": 97.5 if family == "cnn" else 64.25, "n_val": 3925,
                                               "epochs": 3})
        for m, (pos, neg) in aucs.items():
            drops = CNN_DROPS[m] if b == CNN else [float(10 * (k + 1)) for k in range(4)]
            _write(res / "evaluate" / b / f"{m}.json", {
                "backbone": b, "method": m, "family": family, "n_images": 4, "fractions": FRACTIONS,
                "variants": {"fair": _variant(pos, neg), "full": _variant(pos, neg, shift=1.0)},
                "drop": float(np.mean(drops)), "inc": 25.0, "per_image": {"drop": drops, "inc": [0, 1, 0, 0]},
                "calibration": _variant(30.0, 30.1) if m == "random" else None})
        _write(res / "train_scan" / b / "default" / "summary.json",
               {"alpha": 4, "final_loss": 0.123456, "val_confidence_area": 0.21, "target_area": 0.2,
                "epochs": 4})
        (res / "train_scan" / b / "default" / "curves.csv").write_text(
            "step,loss,loss_c,loss_r,confidence_area\n0,0.9,0.5,0.4,0.5\n1,0.5,0.3,0.2,0.3\n2,0.3,0.2,0.1,0.22\n")
        _write(res / "timing" / f"{b}.json", {"device": "cpu (2 cores)", "n_images": 32, "methods": {
            m: {"ms_per_image": 10.0 * (k + 1), "ms_iqr": [9.0 * (k + 1), 11.0 * (k + 1)],
                "ms_per_image_batched": 5.0 * (k + 1), "ratio_to_gradcam": (k + 1) / 2}
            for k, m in enumerate(aucs)}})
    if with_sanity:
        r = lambda d, n: {"auc_d": d, "neg_auc": n, "pos_auc": n - d}  # noqa: E731
        _write(res / "sanity" / f"{CNN}.json", {
            "scan": {"original": r(34.1, 40.2), "random_weights": r(0.3, 10.0), "random_label": r(20.0, 30.0)},
            "layercam": {"original": r(32.0, 39.0), "random_weights": r(-0.2, 9.0), "random_label": r(25.0, 35.0)}})
        _write(res / "sanity" / f"{VIT}.json", {
            "scan": {"original": r(30.0, 45.0), "random_weights": r(0.1, 12.0), "random_label": r(10.0, 30.0)}})
    if with_ablation:
        for b in (CNN, VIT):
            for a, d in ((2, 30.0), (4, 34.0), (8, 31.0)):
                _write(res / "ablation" / "alpha" / b / f"{a}.json", {
                    "backbone": b, "kind": "alpha", "setting": str(a), "pos_auc": 8.0, "neg_auc": 8.0 + d,
                    "auc_d": d, "n_images": 4, "val_confidence_area": 0.3})
            for p, d in ((50, 20.0), (95, 33.0), (0, 10.0)):
                _write(res / "ablation" / "p" / b / f"{p}.json", {
                    "backbone": b, "kind": "p", "setting": str(p), "pos_auc": 9.0, "neg_auc": 9.0 + d,
                    "auc_d": d, "n_images": 4})
            for lay, d in (("default", 33.0), ("alt1", 29.0), ("alt2", 31.0)):
                _write(res / "ablation" / "layer" / b / f"{lay}.json", {
                    "backbone": b, "kind": "layer", "setting": lay, "pos_auc": 9.0, "neg_auc": 9.0 + d,
                    "auc_d": d, "n_images": 4})
        for comp, d in (("alpha1", 3.0), ("no_mask", 20.0), ("sigmoid", 30.0)):
            _write(res / "ablation" / "components" / CNN / f"{comp}.json", {
                "backbone": CNN, "kind": "components", "setting": comp, "pos_auc": 9.0, "neg_auc": 9.0 + d,
                "auc_d": d, "n_images": 4})
    _write(res / "stage_times.json", {"prepare": 3.5, "evaluate": 120.25})
    return res


def _row(df: pd.DataFrame, **keys) -> dict:
    sel = df
    for k, v in keys.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, f"{keys}: {len(sel)} rows"
    return sel.iloc[0].to_dict()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    res = make_results_tree(tmp_path_factory.mktemp("built"))
    results = collect_results(res)
    metrics = build_metrics(results, default_alpha=4)
    tables = {t.number: t for t in build_tables(results, metrics, load_paper_values(),
                                                {"scan": {"alpha": 4}, "data": {"root": "x/imagenette"}})}
    return results, metrics, tables


def test_report_keeps_only_what_params_declare(tmp_path):
    """Stale files of another profile (e.g. committed default-run JSONs beside a smoke run) stay out."""
    res = make_results_tree(tmp_path)
    params = {"backbones": [CNN], "scan": {"layers": ["default"]},
              "explain": {"baselines": {"cnn": ["gradcam", "random"], "vit": ["gradcam"]}},
              "ablation": {"alphas": [2, 4], "percentiles": [95.0, 50], "layers": ["default"],
                           "components": ["no_mask"]}}
    results = restrict_to_params(collect_results(res), params)
    assert results.backbones() == [CNN]
    assert set(results.evaluate[CNN]) == {"scan", "gradcam", "random"} & set(CNN_AUCS)
    assert set(results.ablation["alpha"][CNN]) == {"2", "4"}
    assert set(results.ablation["p"][CNN]) == {"50", "95"}
    assert set(results.ablation["layer"][CNN]) == {"default"}
    assert set(results.ablation["components"][CNN]) == {"no_mask"}
    metrics = build_metrics(results, default_alpha=4)
    assert set(metrics["ablation_p"]) == {CNN} and set(metrics["ablation_p"][CNN]) == {"50", "95"}
    # ablation.backbones narrows the ablations alone: the backbone keeps its other results
    params["backbones"], params["families"] = [CNN, VIT], {"cnn": [CNN], "vit": [VIT]}
    params["ablation"]["backbones"] = [VIT]
    results = restrict_to_params(collect_results(res), params)
    assert CNN in results.evaluate and all(CNN not in per for per in results.ablation.values())


# ------------------------------------------------------------------------------------------------ Win%

def test_win_rates_by_hand_with_tie_and_calibration_row():
    wins = win_rates(CNN_DROPS)
    assert wins == pytest.approx(CNN_WIN)
    # without the calibration row, nobody's Win% changes
    no_random = {m: v for m, v in CNN_DROPS.items() if m != "random"}
    assert win_rates(no_random) == pytest.approx({m: CNN_WIN[m] for m in no_random})
    # a NaN drop never wins
    assert win_rates({"a": [float("nan"), 1.0], "b": [3.0, 2.0]}) == pytest.approx({"a": 50.0, "b": 50.0})


def test_win_rates_reject_misaligned_images():
    with pytest.raises(ScanbenchError, match="same images"):
        win_rates({"a": [1, 2, 3], "b": [1, 2]})


# ------------------------------------------------------------------------------------------------ metric JSONs

def test_metric_files_have_the_documented_shape(built):
    results, metrics, _ = built
    ex = metrics["explanations"][CNN]
    assert ex["family"] == "cnn" and ex["n_images"] == 4
    scan = ex["methods"]["scan"]
    assert set(scan) == {"pos_auc", "neg_auc", "auc_d", "drop", "inc", "win"}
    assert scan["pos_auc"] == pytest.approx(6.1) and scan["auc_d"] == pytest.approx(34.1)
    assert scan["drop"] == pytest.approx(22.5) and scan["win"] == pytest.approx(50.0)
    assert {m: v["win"] for m, v in ex["methods"].items()} == pytest.approx(CNN_WIN)
    # the fair variant, not the full one (full is shifted by +1)
    assert metrics["explanations"][VIT]["methods"]["rollout"]["pos_auc"] == pytest.approx(22.0)
    assert metrics["sanity"][CNN]["layercam"] == pytest.approx(
        {"original": 32.0, "random_weights": -0.2, "random_label": 25.0})
    assert metrics["timing"][VIT]["raw_attention"] == {"ms_per_image": 20.0, "ratio_to_gradcam": 1.0}
    assert metrics["targets"][CNN] == {"family": "cnn", "val_top1": 97.5, "n_val": 3925}
    rec = [r for r in metrics["scan_training"] if r["backbone"] == VIT][0]
    assert rec == {"backbone": VIT, "alpha": 4, "layer": "default", "final_loss": 0.123456,
                   "val_confidence_area": 0.21, "target_area": 0.2}
    assert metrics["calibration"][CNN] == pytest.approx({"pos_auc": 30.0, "neg_auc": 30.1, "auc_d": 0.1})
    assert list(metrics["ablation_p"][CNN]) == ["0", "50", "95"]  # numeric order, not string order
    assert metrics["ablation_alpha"][VIT]["8"] == pytest.approx({"pos_auc": 8.0, "neg_auc": 39.0, "auc_d": 31.0})
    assert metrics["ablation_components"][CNN]["alpha1"]["auc_d"] == pytest.approx(3.0)


# ------------------------------------------------------------------------------------------------ tables

def test_table2_cnn_beside_resnet50v2(built):
    _, _, t = built
    df = t["II"].df
    scan = _row(df, backbone=CNN, method="scan")
    assert scan["auc_d"] == pytest.approx(34.1) and scan["paper_auc_d"] == pytest.approx(37.29)
    assert scan["neg_auc"] == pytest.approx(40.2) and scan["paper_neg_auc"] == pytest.approx(42.87)
    assert scan["pos_auc"] == pytest.approx(6.1) and scan["paper_pos_auc"] == pytest.approx(5.58)
    assert scan["auc_d_ci95"] == "[31.10, 37.10]"
    assert scan["auc_d_full"] == pytest.approx(34.1 - 0.5)
    assert scan["win"] == pytest.approx(50.0)
    assert _row(df, backbone=CNN, method="xgradcam")["paper_auc_d"] == pytest.approx(32.72)
    assert _row(df, backbone=CNN, method="layercam")["paper_pos_auc"] == pytest.approx(6.15)
    # Grad-CAM is not in the paper's Table II: our numbers, empty paper cells
    gc = _row(df, backbone=CNN, method="gradcam")
    assert gc["auc_d"] == pytest.approx(27.5) and gc["paper_auc_d"] is None
    # the paper has no Drop/Inc/Win in Table II: no paper columns for them
    assert "paper_drop" not in df.columns and "drop" in df.columns
    # adjacency: each paper column right after ours (and the CI)
    cols = list(df.columns)
    assert cols[cols.index("auc_d") + 1] == "auc_d_ci95" and cols[cols.index("auc_d") + 2] == "paper_auc_d"
    assert not (df["backbone"] == VIT).any()


def test_table1_vit_beside_vit_b16_with_paper_only_rows(built):
    _, _, t = built
    df = t["I"].df
    ra = _row(df, backbone=VIT, method="raw_attention")
    assert ra["auc_d"] == pytest.approx(15.0) and ra["paper_auc_d"] == pytest.approx(21.56)
    assert ra["paper_drop"] == pytest.approx(68.26) and ra["paper_win"] == pytest.approx(9.31)
    assert "ImageNet" in ra["paper_ref"]
    # LRP is not implemented: paper values only
    lrp = _row(df, backbone=VIT, method="LRP")
    assert lrp["auc_d"] is None and lrp["paper_auc_d"] == pytest.approx(1.55)
    # random map pairs with the paper's Sec. IV.A calibration numbers
    rnd = _row(df, backbone=VIT, method="random")
    assert rnd["paper_pos_auc"] == pytest.approx(14.15) and rnd["paper_win"] == pytest.approx(20.39)
    # the paper's other datasets follow as reference rows
    cub_scan = df[(df["backbone"] == "paper") & (df["method"] == "scan") & df["paper_ref"].str.contains("CUB")]
    assert len(cub_scan) == 1 and cub_scan.iloc[0]["paper_auc_d"] == pytest.approx(77.80)
    assert not (df["backbone"] == CNN).any()


def test_table3_scan_vs_best_baseline(built):
    _, _, t = built
    df = t["III"].df
    ours = df[df["backbone"] == CNN]
    assert list(ours["method"]) == ["scan", "layercam (best baseline)", "lime"]
    assert _row(df, backbone=CNN, method="layercam (best baseline)")["auc_d"] == pytest.approx(32.0)
    assert _row(df, backbone=VIT, method="transformer_attribution (best baseline)")["paper_auc_d"] == \
        pytest.approx(37.13)
    dino = df[(df["backbone"] == "paper") & df["paper_ref"].str.startswith("DINO")]
    assert set(dino["method"]) == {"transformer_attribution", "lime", "scan"}
    assert _row(dino, method="scan")["paper_auc_d"] == pytest.approx(40.43)


def test_table4_sanity_and_missing_stage(tmp_path, built):
    _, _, t = built
    df = t["IV"].df
    rw = _row(df, backbone=CNN, method="scan", setting="random_weights")
    assert rw["auc_d"] == pytest.approx(0.3) and rw["paper_auc_d"] == pytest.approx(0.01)
    assert _row(df, backbone=CNN, method="layercam", setting="random_label")["paper_auc_d"] == pytest.approx(32.58)
    assert _row(df, backbone=VIT, method="scan", setting="original")["paper_auc_d"] is None  # paper: CNN only

    res = make_results_tree(tmp_path / "nos", with_sanity=False, with_ablation=False)
    results = collect_results(res)
    metrics = build_metrics(results)
    tables = {x.number: x for x in build_tables(results, metrics, load_paper_values(), {})}
    df = tables["IV"].df
    assert df.iloc[0]["backbone"] == "(no results)" and "sanity" in df.iloc[0]["method"]
    # the paper's numbers are still there; ours are empty, never invented
    scan_rw = df[(df["method"] == "scan") & (df["setting"] == "random_weights")]
    assert scan_rw.iloc[0]["paper_auc_d"] == pytest.approx(0.01) and scan_rw.iloc[0]["auc_d"] is None
    for number in ("VI", "VII", "VIII", "IX"):
        d = tables[number].df
        assert d.iloc[0]["backbone"] == "(no results)"
        assert d["auc_d"].isna().all() and d["paper_auc_d"].notna().sum() >= 5
    assert metrics["sanity"] == {} and metrics["ablation_alpha"] == {}


def test_ablation_tables_pair_settings_with_the_paper(built):
    _, _, t = built
    vi = t["VI"].df
    assert _row(vi, backbone=CNN, setting="2")["paper_auc_d"] == pytest.approx(35.26)
    assert _row(vi, backbone=VIT, setting="8")["paper_auc_d"] == pytest.approx(34.30)
    assert _row(vi, backbone=CNN, setting="4")["auc_d"] == pytest.approx(34.0)
    # alpha 16 was not run here: the paper's rows appear as reference rows
    ref16 = vi[(vi["backbone"] == "paper") & (vi["setting"] == "16")]
    assert sorted(ref16["paper_auc_d"]) == pytest.approx([14.00, 31.20])
    vii = t["VII"].df
    assert _row(vii, backbone=VIT, setting="alt2")["paper_auc_d"] == pytest.approx(34.56)  # deeper = 9th
    assert _row(vii, backbone=VIT, setting="alt1")["paper_auc_d"] == pytest.approx(33.10)  # shallower = 3rd
    assert _row(vii, backbone=CNN, setting="default")["paper_auc_d"] == pytest.approx(37.29)
    viii = t["VIII"].df
    assert list(viii[viii["backbone"] == CNN]["setting"]) == ["0", "50", "95"]
    assert _row(viii, backbone=CNN, setting="0")["paper_auc_d"] == pytest.approx(23.09)
    assert _row(viii, backbone=VIT, setting="95")["paper_neg_auc"] == pytest.approx(49.29)
    assert all(isinstance(v, int) for v in vii["n_images"] if v is not None)  # counts stay counts
    # a layer ablation run at alpha 8 pairs with the paper's alpha = 8 column
    r8 = Results(evaluate={VIT: {"scan": {"family": "vit"}}}, ablation={"layer": {VIT: {"default": {
        "setting": "default", "alpha": 8.0, "pos_auc": 10.0, "neg_auc": 40.0, "auc_d": 30.0}}}})
    assert _row(table7(r8, {}, load_paper_values()).df, backbone=VIT)["paper_auc_d"] == pytest.approx(34.30)
    ix = t["IX"].df
    assert _row(ix, backbone=CNN, setting="alpha1")["paper_auc_d"] == pytest.approx(4.19)
    assert _row(ix, backbone=CNN, setting="sigmoid")["auc_d"] == pytest.approx(30.0)
    assert (ix["paper_row"] == "w/o Gaussian Blur").sum() == 1  # not run here: reference row


def test_table5_timing(built):
    _, _, t = built
    df = t["V"].df
    row = _row(df, backbone=CNN, method="lime")
    assert row["paper_ms_per_image"] == pytest.approx(1187.5) and row["ms_per_image"] == pytest.approx(60.0)
    assert row["ms_iqr"] == "[54.00, 66.00]"
    assert _row(df, backbone=VIT, method="lime")["paper_ms_per_image"] is None


def test_writers_csv_and_markdown(tmp_path, built):
    _, _, t = built
    paths = write_tables(list(t.values()), tmp_path / "tables")
    assert sorted(p.name for p in paths) == sorted([f"table{i}.{e}" for i in range(1, 10) for e in ("csv", "md")])
    csv = pd.read_csv(tmp_path / "tables" / "table2.csv")
    scan = csv[(csv["backbone"] == CNN) & (csv["method"] == "scan")].iloc[0]
    assert scan["auc_d"] == pytest.approx(34.1) and scan["paper_auc_d"] == pytest.approx(37.29)
    assert math.isnan(csv[(csv["backbone"] == CNN) & (csv["method"] == "gradcam")].iloc[0]["paper_auc_d"])
    md = table_markdown(t["II"])
    assert md.startswith("## Table II") and "| scan" in md and "37.29" in md and "34.10" in md


# ------------------------------------------------------------------------------------------------ paper values

def test_paper_values_are_internally_consistent_and_in_the_paper():
    recs = yaml.safe_load((REPO / "src/scanbench/report/paper_values.yaml").read_text())["records"]
    assert len(recs) == 102
    for r in recs:
        if all(k in r for k in ("auc_d", "neg_auc", "pos_auc")):  # AUC-D = Neg - Pos, up to print rounding
            assert r["neg_auc"] - r["pos_auc"] == pytest.approx(r["auc_d"], abs=0.03), r
    if not PAPER_TXT.exists():
        pytest.skip("paper text not available")
    printed = {float(x) for x in re.findall(r"-?\d+\.\d+(?=ms|%)", PAPER_TXT.read_text())}
    for r in recs:
        for k in ("auc_d", "neg_auc", "pos_auc", "drop", "inc", "win", "ms_per_image"):
            if k in r:
                assert float(r[k]) in printed, (r["table"], r["paper_row"], k)
    paper = load_paper_values()
    assert paper.lookup("IV", "ResNet50V2", "layercam", setting="random_weights")["auc_d"] == pytest.approx(-0.01)
    assert paper.lookup("VII", "ViT-B/16", "scan", setting="default", alpha=8)["auc_d"] == pytest.approx(34.30)


# ------------------------------------------------------------------------------------------------ stage script

def run_report_stage(cwd: Path, monkeypatch, *args: str) -> None:
    """Run pipeline/report.py in this process (a subprocess would pay the torch import again)."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["report.py", *args])
    monkeypatch.syspath_prepend(str(REPO / "pipeline"))
    runpy.run_path(str(REPO / "pipeline" / "report.py"), run_name="__main__")


def test_report_stage_end_to_end(tmp_path, monkeypatch):
    make_results_tree(tmp_path)
    params = yaml.safe_load((REPO / "profiles" / "default.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    run_report_stage(tmp_path, monkeypatch, "--no-figures", "--stage-times", "results/stage_times.json")
    out = tmp_path / "reports"
    for stem in ("explanations", "sanity", "timing", "scan_training", "targets", "calibration",
                 "ablation_alpha", "ablation_layer", "ablation_p", "ablation_components"):
        assert (out / "metrics" / f"{stem}.json").exists(), stem
    ex = json.loads((out / "metrics" / "explanations.json").read_text())
    assert ex[CNN]["methods"]["layercam"]["win"] == pytest.approx(25.0)
    for i in range(1, 10):
        assert (out / "tables" / f"table{i}.md").stat().st_size > 0
    readme = (out / "README.md").read_text()
    assert "profile: `default`" in readme and "Win%" in readme and "ties count" in readme
    assert "(tables/table1.md)" in readme and "EfficientNet-Lite0" in readme and "LRP" in readme
    assert "| evaluate | 120.2" in readme  # stage wall times
