"""Report stage: one run's results tree (only the files the params name) -> the long results table, metric
JSONs (exact structure), Tables I-IV / VI-IX beside the paper's values, Table V for the timing stage, and the
stage script end to end."""
from __future__ import annotations

import json
import re
import runpy
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from scanbench.errors import ScanbenchError
from scanbench.metrics.bootstrap import bootstrap_ci, paired_bootstrap_ci
from scanbench.report.metrics import build_metrics
from scanbench.report.paired import load_paired, load_results_with_pairs
from scanbench.report.results import load_results, result_files, win_rates
from scanbench.report.tables import (
    build_tables,
    fmt,
    load_paper,
    markdown,
    timing_table,
    write_table,
    write_timing_table,
)

REPO = Path(__file__).resolve().parents[1]
PAPER_TXT = REPO.parent / "shared" / "paper" / "SCAN-paper.txt"
FRACTIONS = [round(0.1 * i, 1) for i in range(10)]

VIT, CNN = "vit_tiny_convstem", "effnet_lite0"
# Per-image Drop% for the CNN, chosen so Win% is easy by hand (4 images):
#   image 0: scan best (10); random 5 would beat it   image 1: gradcam best (40)
#   image 2: scan and gradcam tie at 0                image 3: layercam best (10)
#   the centre prior (a calibration row, like random) never beats the best real method
CNN_DROPS = {"scan": [10, 50, 0, 30], "gradcam": [20, 40, 0, 30], "layercam": [30, 60, 5, 10],
             "lime": [50, 50, 50, 50], "random": [5, 95, 95, 95], "centre": [15, 45, 10, 30]}
CNN_WIN = {"scan": 50.0, "gradcam": 50.0, "layercam": 25.0, "lime": 0.0, "random": 25.0, "centre": 0.0}
# (pos_auc, neg_auc) per method, fair variant
AUCS = {CNN: {"scan": (6.1, 40.2), "gradcam": (8.0, 35.5), "layercam": (7.0, 39.0), "lime": (10.0, 30.0),
              "random": (20.0, 20.5), "centre": (12.0, 38.0)},
        VIT: {"scan": (15.0, 45.0), "raw_attention": (25.0, 40.0), "transformer_attribution": (18.0, 47.0),
              "lrp": (28.0, 31.0),
              "lime": (19.0, 42.0), "random": (30.0, 30.2), "centre": (20.0, 41.0)}}
# Per-image AUC-D (fair) = the method's AUC-D + these offsets (mean 0) on the 4 evaluation images (manifest rows
# EVAL_ROWS). The centre prior follows SCAN's pattern exactly, so their paired difference is a constant.
OFFSETS = {"scan": [-3, 1, 4, -2], "centre": [-3, 1, 4, -2], "gradcam": [6, -6, 2, -2],
           "layercam": [-1, 2, -3, 2], "lime": [0, 0, 0, 0], "random": [10, -10, 5, -5],
           "raw_attention": [4, -4, 4, -4], "transformer_attribution": [-2, 2, -2, 2], "lrp": [1, -1, 1, -1]}
EVAL_ROWS = [11, 25, 31, 40]
ABLATION_AUC_D = {"alpha": {"2": 30.0, "4": 34.0, "8": 31.0}, "p": {"0": 10.0, "50": 20.0, "95": 33.0},
                  "layer": {"default": 33.0, "alt1": 29.0, "alt2": 33.0},
                  "components": {"full": 33.0, "alpha1": 3.0, "no_mask": 20.0, "sigmoid": 30.0}}
# Per-image AUC-D of an ablation setting = its AUC-D + these offsets (mean 0): the reference's pattern unless named
# here, so a setting differs from its kind's reference (alpha 4, P 95, layer default, full) by a constant (its
# paired interval is that constant: layer alt2, equal to default image by image, 0 [0, 0]), except alpha 8, whose
# differences scatter around -3 across 0
ABLATION_OFFSETS = {("alpha", "8"): [10, -10, 5, -5]}
ABLATION_REF_OFFSETS = [-3, 1, 4, -2]
PARAMS = {
    "profile": "test", "data": {"root": "../shared/data/imagenette"}, "backbones": [CNN, VIT],
    "families": {"cnn": [CNN], "vit": [VIT]}, "alpha": 4, "scan": {"layers": ["default"]},
    "seed": 0, "evaluate": {"bootstrap": 300},
    "explain": {"baselines": {"cnn": ["gradcam", "layercam", "lime", "random", "centre"],
                              "vit": ["raw_attention", "lrp", "transformer_attribution", "lime", "random",
                                      "centre"]}},
    "sanity": {"methods": {"cnn": ["scan", "layercam"], "vit": ["scan"]}},
    "scaling": {"n_train": [10, None], "steps": 10},
    "ablation": {"backbones": [CNN, VIT], "base_alpha": 4, "alphas": [8, 2, 4.0], "percentiles": [95, 0, 50],
                 "layers": ["default", "alt1", "alt2"], "components": ["full", "alpha1", "no_mask", "sigmoid"]},
}


def _variant(pos: float, neg: float, shift: float = 0.0) -> dict:
    pos, neg = pos + shift, neg + shift / 2
    return {"pos_curve": [pos * 1.1] * 10, "neg_curve": [neg * 1.1] * 10, "pos_auc": pos, "neg_auc": neg,
            "auc_d": neg - pos, "pos_auc_ci": [pos - 1.5, pos + 1.25], "neg_auc_ci": [neg - 2, neg + 2],
            "auc_d_ci": [neg - pos - 3, neg - pos + 3]}


def _write(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


def _content(f, family: str) -> dict | str:
    """What the stage writing `f` writes (hand-set values)."""
    b, m, s = f.backbone, f.method, f.setting
    if f.part == "targets":
        return {"family": family, "val_top1": 97.5 if family == "cnn" else 64.25, "n_val": 3925}
    if f.path.endswith("curves.csv"):
        return "step,epoch,loss,conf_area\n10,1,0.9,0.5\n20,1,0.5,0.3\n30,2,0.3,0.22\n"
    if f.part == "train_scan":
        return {"backbone": b, "layer": s, "final_loss": 0.1234567, "val_confidence_area": 0.21, "target_area": 0.2,
                "n_train": 40, "steps": 30,
                "widths": [8, 4]}
    if f.part == "diagnostics":
        return {"backbone": b, "layer": "default", "recon_err": 0.17, "mean_image_err": 0.2, "recon_skill": 0.15,
                "conf_image_std": 0.07, "train_conf_area": 0.13, "train_recon_err": 0.14}
    if f.part == "evaluate":
        pos, neg = AUCS[b][m]
        drops = CNN_DROPS[m] if b == CNN else [float(10 * (k + 1)) for k in range(4)]
        fair = _variant(pos, neg)
        fair["per_image_auc_d"] = [fair["auc_d"] + o for o in OFFSETS[m]]
        return {"backbone": b, "method": m, "family": family, "n_images": 4, "fractions": FRACTIONS,
                "variants": {"fair": fair, "full": _variant(pos, neg, shift=1.0)},
                "drop": float(np.mean(drops)), "inc": 25.0,
                "per_image": {"index": EVAL_ROWS, "drop": drops, "inc": [0, 1, 0, 0]},
                "calibration": _variant(30.0, 30.1) if m == "random" else None}
    if f.part == "scaling":
        return {"backbone": b, "alpha": 4.0, "p": 95.0, "n_images": 4, "n_holdout": 3,
                "rows": [{"n_train": n, "steps": 10, "epochs": e, "recon_skill": k, "conf_area": 0.15,
                          "conf_image_std": 0.05, "train_recon_err": 0.1, "recon_err": 0.12, "auc_d": d,
                          "auc_d_ci": [d - 5, d + 5], "pos_auc": 30.0, "neg_auc": 30.0 + d}
                         for n, e, k, d in ((10, 4.0, 0.1, 5.0), (40, 1.0, 0.3, 12.5))]}
    if f.part == "sanity":
        d = {"scan": (34.1, 0.3, 20.0), "layercam": (32.0, -0.2, 25.0)}[m]
        return {s: {"auc_d": v, "neg_auc": 40.0, "pos_auc": 40.0 - v}
                for s, v in zip(("original", "random_weights", "random_label"), d)}
    if f.part == "sanity_maps":
        return sanity_maps_content(m)
    if f.part == "grid":
        return grid_content(b, m, family)
    kind = f.part.removeprefix("ablation_")
    d = ABLATION_AUC_D[kind][s]
    offsets = ABLATION_OFFSETS.get((kind, s), ABLATION_REF_OFFSETS)
    return {"backbone": b, "kind": kind, "setting": s, "alpha": float(s) if kind == "alpha" else 4.0,
            "pos_auc": 8.0, "neg_auc": 8.0 + d, "auc_d": d, "auc_d_ci": [d - 2, d + 2], "n_images": 4,
            "full": {"pos_auc": 9.0, "neg_auc": 9.0 + d, "auc_d": d}, "val_confidence_area": 0.3,
            "per_image": {"index": EVAL_ROWS, "auc_d": [d + o for o in offsets], "drop": [10.0] * 4,
                          "inc": [0, 100, 0, 0]}}


# The grid pointing game, per method: its mean share (per tile: this + GRID_NOISE[m] * the pattern, whose mean
# over a mosaic's tiles varies from mosaic to mosaic); pointing = 1 where the share > 0.5. The centre prior
# scores exactly 0.25 everywhere; LIME is the centre prior + 0.05 on every tile (a constant paired difference).
GRID_SHARE = {"scan": 0.6, "gradcam": 0.7, "layercam": 0.5, "lime": 0.3, "random": 0.25, "centre": 0.25,
              "raw_attention": 0.45, "lrp": 0.35, "transformer_attribution": 0.55}
GRID_NOISE = {"centre": 0.0, "lime": 0.0}
GRID_PATTERN = np.array([[0.1, -0.1, 0.05, 0.05], [-0.1, 0.0, -0.05, 0.05], [0.2, 0.1, 0.0, 0.1],
                         [-0.2, -0.1, 0.0, -0.1], [0.05, 0.05, 0.05, 0.05], [-0.05, -0.05, -0.05, -0.05]])
GRID_MOSAICS = [[10 * i + k for k in range(4)] for i in range(len(GRID_PATTERN))]
GRID_PARAMS = {"n_mosaics": 6, "n_candidates": None, "correct_only": True, "min_confidence": 0.5}


def grid_content(b: str, m: str, family: str) -> dict:
    """A grid JSON as the grid stage writes it (scanbench.grid_pointing.grid_record on hand-set scores)."""
    from scanbench.grid_pointing import GridScores, grid_record

    share = GRID_SHARE[m] + GRID_NOISE.get(m, 1.0) * GRID_PATTERN
    scores = GridScores(share, (share > 0.5).astype(float), np.ones_like(share, dtype=bool))
    return {"backbone": b, "method": m, "family": family, "size": 224, **grid_record(scores, 300, 0),
            "mosaics": GRID_MOSAICS}


# Spearman after full randomisation per method (the other measures follow from it in sanity_maps_content)
FULL_SPEARMAN = {"scan": 0.1, "layercam": 0.4}
SANITY_GROUPS = ["stem", "blocks.0", "blocks.1", "head"]


def sanity_maps_content(m: str) -> dict:
    """A sanity_maps JSON as the sanity stage writes it (hand-set similarities)."""
    def rec(v: float, **extra) -> dict:
        return {**extra, "spearman": v, "spearman_ci": [v - 0.05, v + 0.05], "ssim": v / 2,
                "ssim_ci": [v / 2 - 0.1, v / 2 + 0.1], "hog": v + 0.1, "hog_ci": [v, v + 0.2], "n_constant": 1,
                "n_images": 4, "per_image": {"spearman": [v] * 4, "ssim": [v / 2] * 4, "hog": [v + 0.1] * 4}}
    full = FULL_SPEARMAN[m]
    return {"size": 56, "n_images": 4, "groups": SANITY_GROUPS,
            "cascading": {"0": rec(0.9, share=0.0, n_groups=1, randomised=["head"]),
                          "0.5": rec(0.6, share=0.5, n_groups=2, randomised=["head", "blocks.1"]),
                          "1": rec(full, share=1.0, n_groups=4, randomised=SANITY_GROUPS[::-1])},
            "independent": {g: rec(0.8 - 0.1 * i, position=i, randomised=[g]) for i, g in enumerate(SANITY_GROUPS)},
            "random_label": rec(0.7), "other_image": rec(0.2)}


def make_results_tree(root: Path, params: dict = PARAMS) -> Path:
    """results/<profile>/ as the stages write it: every file the params name, with hand-set values."""
    res = root / "results" / params["profile"]
    families = {b: fam for fam, bs in params["families"].items() for b in bs}
    for f in result_files(params):
        content = _content(f, families[f.backbone])
        if isinstance(content, str):
            (res / f.path).parent.mkdir(parents=True, exist_ok=True)
            (res / f.path).write_text(content)
        else:
            _write(res / f.path, content)
    return res


def _row(df: pd.DataFrame, **keys) -> dict:
    sel = df
    for k, v in keys.items():
        sel = sel[sel[k] == v]
    assert len(sel) == 1, f"{keys}: {len(sel)} rows"
    return sel.iloc[0].to_dict()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    results = load_results_with_pairs(make_results_tree(tmp_path_factory.mktemp("built")), PARAMS)
    return results, build_metrics(results), {t.number: t for t in build_tables(results, PARAMS)}


# ------------------------------------------------------------------------------------------------ reading

def test_missing_expected_file_is_an_error_naming_it_and_its_stage(tmp_path):
    res = make_results_tree(tmp_path)
    (res / "evaluate" / CNN / "lime.json").unlink()
    with pytest.raises(ScanbenchError, match=rf"evaluate/{CNN}/lime\.json is missing: run the `evaluate_cnn`"):
        load_results(res, PARAMS)
    (res / "ablation" / "p" / VIT / "50.json").unlink()
    with pytest.raises(ScanbenchError, match=rf"ablation/p/{VIT}/50\.json is missing.*ablate_p"):
        load_results(res, {**PARAMS, "explain": {"baselines": {"cnn": ["gradcam"], "vit": []}}})
    (res / "sanity" / CNN / "scan.json").write_text("{truncated")
    with pytest.raises(ScanbenchError, match=r"sanity/effnet_lite0/scan\.json is not valid JSON"):
        load_results(res, {**PARAMS, "explain": {"baselines": {"cnn": ["gradcam"], "vit": []}}, "ablation": {}})


def test_files_the_params_do_not_name_are_ignored(tmp_path):
    """Another backbone, method or setting in the folder (e.g. a run on other data) never enters the report."""
    res = make_results_tree(tmp_path)
    _write(res / "targets" / "resnet_stray.json", {"family": "cnn", "val_top1": 1.0, "n_val": 1})
    _write(res / "sanity" / "resnet_stray" / "scan.json", {"original": {"auc_d": 1.0}})
    _write(res / "evaluate" / CNN / "rise.json", {"method": "rise", "n_images": 99, "drop": 1.0, "inc": 1.0,
                                                 "per_image": {"drop": [0, 0, 0, 0]}})
    _write(res / "ablation" / "alpha" / CNN / "16.json", {"setting": "16", "auc_d": 99.0})
    results = load_results(res, PARAMS)
    metrics = build_metrics(results)
    assert set(results["backbone"]) == {CNN, VIT}
    assert set(results.loc[results["part"] == "evaluate", "method"]) == set(AUCS[CNN]) | set(AUCS[VIT])
    assert "rise" not in metrics["explanations"][CNN]["methods"] and metrics["explanations"][CNN]["n_images"] == 4
    assert list(metrics["ablation_alpha"][CNN]) == ["2", "4", "8"]
    # the stray rise drops did not take Win% from anyone
    assert metrics["explanations"][CNN]["methods"]["scan"]["win"] == 50.0
    # and a run whose params name fewer files reads fewer
    fewer = load_results(res, {**PARAMS, "backbones": [VIT], "ablation": {"backbones": []}})
    assert set(fewer["backbone"]) == {VIT} and not fewer["part"].str.startswith("ablation").any()


def test_long_table_is_tidy(built):
    results, _, _ = built
    scan_d = results[(results["part"] == "evaluate") & (results["backbone"] == CNN) & (results["method"] == "scan")
                     & (results["metric"] == "auc_d") & results["x"].isna()]
    assert dict(zip(scan_d["variant"], scan_d["value"])) == pytest.approx({"fair": 34.1, "full": 33.6})
    fair = scan_d[scan_d["variant"] == "fair"].iloc[0]
    assert (fair["ci_lo"], fair["ci_hi"]) == pytest.approx((31.1, 37.1))
    curve = results[(results["metric"] == "pos_curve") & (results["backbone"] == VIT) &
                    (results["method"] == "scan") & (results["variant"] == "fair")]
    assert list(curve["x"]) == FRACTIONS and curve["value"].tolist() == pytest.approx([16.5] * 10)
    train = results[(results["part"] == "train_scan") & results["x"].notna() & (results["metric"] == "loss")
                    & (results["backbone"] == CNN)]
    assert train["x"].tolist() == [10, 20, 30] and set(train["setting"]) == {"default"}   # x: the step
    assert not (results["part"].eq("train_scan") & results["metric"].isin(["step", "epoch"])).any()
    assert not results["metric"].isin(["widths", "family", "per_image", "fractions"]).any()


def test_win_rate_by_hand_with_a_tie_and_calibration():
    assert win_rates(CNN_DROPS) == pytest.approx(CNN_WIN)
    # the calibration row takes no win away: removing it changes nobody else's score
    without = win_rates({m: d for m, d in CNN_DROPS.items() if m != "random"})
    assert without == pytest.approx({m: w for m, w in CNN_WIN.items() if m != "random"})
    with pytest.raises(ScanbenchError, match="differ in length"):
        win_rates({"a": [1, 2], "b": [1]})


# ------------------------------------------------------------------------------------------------ metrics

def test_metric_json_structure(built):
    """The metric files are a contract with the committed CI reference: exact keys, nesting, order, rounding."""
    _, m, _ = built
    assert list(m) == ["explanations", "sanity", "sanity_maps", "scan_training", "targets", "calibration",
                       "ablation_alpha", "ablation_layer", "ablation_p", "ablation_components", "grid", "summary"]
    assert m["grid"] == {}   # this run has no grid results: the file DVC lists is still written
    # keyed by name all the way down: DVC's metrics/exp commands print nothing for a list
    def no_lists_of_records(obj, path):
        if isinstance(obj, dict):
            for k, v in obj.items():
                no_lists_of_records(v, f"{path}/{k}")
        else:
            assert not (isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj)), path
    for stem, obj in m.items():
        assert isinstance(obj, dict), stem
        no_lists_of_records(obj, stem)
    assert list(m["explanations"]) == [CNN, VIT]
    cnn = m["explanations"][CNN]
    assert list(cnn) == ["family", "n_images", "methods"] and cnn["family"] == "cnn" and cnn["n_images"] == 4
    # the paper's order, then the calibration rows: random map, centre prior
    assert list(cnn["methods"]) == ["gradcam", "layercam", "lime", "scan", "random", "centre"]
    # SCAN's per-image AUC-D are the centre prior's + 8.1 on every image: the paired interval is [8.1, 8.1]
    assert cnn["methods"]["scan"] == {"pos_auc": 6.1, "neg_auc": 40.2, "auc_d": 34.1, "auc_d_ci95": [31.1, 37.1],
                                      "auc_d_minus_scan_ci95": [0.0, 0.0], "auc_d_minus_centre_ci95": [8.1, 8.1],
                                      "auc_d_minus_random_ci95": [25.55, 41.6], "drop": 22.5, "inc": 25.0, "win": 50.0}
    assert list(cnn["methods"]["scan"]) == ["pos_auc", "neg_auc", "auc_d", "auc_d_ci95", "auc_d_minus_scan_ci95",
                                            "auc_d_minus_centre_ci95", "auc_d_minus_random_ci95", "drop", "inc",
                                            "win"]
    assert cnn["methods"]["centre"]["auc_d_minus_scan_ci95"] == [-8.1, -8.1]
    assert {k: v["win"] for k, v in cnn["methods"].items()} == CNN_WIN
    assert m["sanity"] == {CNN: {"layercam": {"original": 32.0, "random_weights": -0.2, "random_label": 25.0},
                                 "scan": {"original": 34.1, "random_weights": 0.3, "random_label": 20.0}},
                           VIT: {"scan": {"original": 34.1, "random_weights": 0.3, "random_label": 20.0}}}
    # map similarities after full randomisation and after label randomisation; the depths are in the table
    assert m["sanity_maps"] == {
        b: {m: {"all_weights": {"spearman": full, "ssim": full / 2, "hog": pytest.approx(full + 0.1)},
                "random_label": {"spearman": 0.7, "ssim": 0.35, "hog": 0.8},
                "other_image": {"spearman": 0.2, "ssim": 0.1, "hog": pytest.approx(0.3)}}
            for m, full in FULL_SPEARMAN.items() if b == CNN or m == "scan"} for b in (CNN, VIT)}
    assert list(m["sanity_maps"][CNN]) == ["layercam", "scan"]
    assert m["scan_training"][CNN]["default"] == {
        "alpha": None, "final_loss": 0.123457, "n_train": 40, "steps": 30, "val_confidence_area": 0.21,
        "target_area": 0.2, "val_recon_err": 0.17, "val_mean_image_err": 0.2, "val_recon_skill": 0.15,
        "val_conf_image_std": 0.07, "train_confidence_area": 0.13, "train_recon_err": 0.14}
    assert list(m["scan_training"]) == [CNN, VIT] and list(m["scan_training"][VIT]) == ["default"]
    # the headline: AUC-D per backbone and method, SCAN's held-out skill; the same numbers as the detail files
    assert list(m["summary"]) == ["auc_d", "scan_held_out_skill"] and list(m["summary"]["auc_d"]) == [CNN, VIT]
    assert m["summary"]["auc_d"][CNN] == {k: v["auc_d"] for k, v in cnn["methods"].items()}
    assert m["summary"]["auc_d"][CNN]["scan"] == 34.1 and m["summary"]["scan_held_out_skill"][CNN] == 0.15
    assert m["targets"] == {CNN: {"family": "cnn", "val_top1": 97.5, "n_val": 3925},
                            VIT: {"family": "vit", "val_top1": 64.25, "n_val": 3925}}
    assert m["calibration"] == {b: {"pos_auc": 30.0, "neg_auc": 30.1, "auc_d": pytest.approx(0.1)} for b in (CNN, VIT)}
    assert list(m["ablation_p"][CNN]) == ["0", "50", "95"] and list(m["ablation_layer"][VIT]) == ["default", "alt1",
                                                                                                  "alt2"]
    ci8 = paired_bootstrap_ci(_ablation_per_image("alpha", "8"), _ablation_per_image("alpha", "4"), 300, seed=0)
    assert m["ablation_alpha"][VIT]["8"] == {"pos_auc": 8.0, "neg_auc": 39.0, "auc_d": 31.0, "auc_d_minus_ref": -3.0,
                                             "auc_d_minus_ref_ci95": pytest.approx(list(ci8), abs=1e-4)}
    assert m["ablation_alpha"][VIT]["4"]["auc_d_minus_ref_ci95"] == [0.0, 0.0]       # the reference itself
    assert m["ablation_p"][CNN]["0"]["auc_d_minus_ref"] == -23.0
    assert list(m["ablation_components"][CNN]) == ["full", "alpha1", "no_mask", "sigmoid"]
    # a decoder summary without its alpha takes the top-level alpha
    results = built[0]
    assert build_metrics(results, scan_alpha=4)["scan_training"][CNN]["default"]["alpha"] == 4.0
    json.dumps(m)  # plain JSON types only


def _ablation_per_image(kind: str, setting: str) -> np.ndarray:
    d = ABLATION_AUC_D[kind][setting]
    return np.asarray([d + o for o in ABLATION_OFFSETS.get((kind, setting), ABLATION_REF_OFFSETS)])


def _per_image(b: str, m: str) -> np.ndarray:
    pos, neg = AUCS[b][m]
    return np.asarray([neg - pos + o for o in OFFSETS[m]])


def test_paired_differences_match_the_paired_bootstrap(built):
    """Every method against SCAN and the centre prior: mean difference and the paired bootstrap on the images,
    with the evaluate stage's seed and resamples; the own interval stays the evaluate stage's auc_d_ci."""
    results, m, _ = built
    for b in (CNN, VIT):
        methods = m["explanations"][b]["methods"]
        for meth in AUCS[b]:
            for ref in ("scan", "centre"):
                row = _row(results, part="evaluate", backbone=b, method=meth, metric=f"auc_d_minus_{ref}")
                diff = _per_image(b, meth) - _per_image(b, ref)
                assert row["variant"] == "fair" and row["value"] == pytest.approx(diff.mean(), abs=1e-9)
                ci = paired_bootstrap_ci(_per_image(b, meth), _per_image(b, ref), 300, seed=0)
                assert (row["ci_lo"], row["ci_hi"]) == pytest.approx(tuple(ci), abs=1e-9)
                assert methods[meth][f"auc_d_minus_{ref}_ci95"] == pytest.approx(list(ci), abs=1e-4)
    # gradcam and SCAN differ image by image: a real interval around the mean difference, and it is the
    # bootstrap of the per-image differences (same draws), not a sum of two separate intervals
    gc = m["explanations"][CNN]["methods"]["gradcam"]["auc_d_minus_scan_ci95"]
    assert gc[0] < 27.5 - 34.1 < gc[1]
    assert gc == pytest.approx(list(bootstrap_ci(_per_image(CNN, "gradcam") - _per_image(CNN, "scan"), 300, 0)),
                               abs=1e-4)
    # a method against itself: 0 [0, 0]; lime (constant per image) minus scan mirrors scan's own spread
    assert _row(results, part="evaluate", backbone=VIT, method="scan", metric="auc_d_minus_scan")["value"] == 0.0
    assert m["explanations"][VIT]["methods"]["centre"]["auc_d_minus_centre_ci95"] == [0.0, 0.0]


def test_paired_comparisons_need_the_same_images_and_per_image_values(tmp_path):
    res = make_results_tree(tmp_path)
    path = res / "evaluate" / CNN / "layercam.json"
    data = json.loads(path.read_text())
    _write(path, {**data, "per_image": {**data["per_image"], "index": [11, 25, 31, 41]}})
    with pytest.raises(ScanbenchError, match=r"effnet_lite0: layercam and scan were evaluated on different "
                                             r"images.*re-run `evaluate`"):
        load_paired(res, PARAMS)
    del data["variants"]["fair"]["per_image_auc_d"]
    _write(path, data)
    with pytest.raises(ScanbenchError, match=r"layercam\.json \(stage `evaluate_cnn`: re-run it\) has no per-image"):
        load_paired(res, PARAMS)
    data["variants"]["fair"]["per_image_auc_d"] = [40.0, 40.0, 40.0, 40.0]    # mean 40, file says 32
    _write(path, data)
    with pytest.raises(ScanbenchError, match=r"average to 40\.000000, not the file's auc_d 32\.000000"):
        load_paired(res, PARAMS)
    with pytest.raises(ScanbenchError, match=r"evaluate\.bootstrap and seed"):
        load_paired(res, {k: v for k, v in PARAMS.items() if k != "evaluate"})


def test_paired_fields_are_empty_without_their_reference(tmp_path):
    """A run whose params name no centre prior has no difference to it: None, never a made-up number."""
    params = {**PARAMS, "explain": {"baselines": {"cnn": ["gradcam", "random"], "vit": ["lime"]}}}
    res = make_results_tree(tmp_path, params)
    methods = build_metrics(load_results_with_pairs(res, params))["explanations"][CNN]["methods"]
    assert methods["gradcam"]["auc_d_minus_centre_ci95"] is None
    assert methods["gradcam"]["auc_d_minus_scan_ci95"] is not None and methods["scan"]["auc_d_ci95"] == [31.1, 37.1]


# ------------------------------------------------------------------------------------------------ tables

def test_table2_cnn_beside_resnet50v2(built):
    _, _, t = built
    df = t["II"].df
    scan = _row(df, backbone=CNN, method="scan")
    assert scan["auc_d"] == pytest.approx(34.1) and scan["paper_auc_d"] == pytest.approx(37.29)
    assert scan["auc_d_ci95"] == "[31.10, 37.10]" and scan["auc_d_full"] == pytest.approx(33.6)
    assert scan["n_images"] == 4 and scan["win"] == 50.0
    assert _row(df, backbone=CNN, method="layercam")["paper_pos_auc"] == pytest.approx(6.15)
    gc = _row(df, backbone=CNN, method="gradcam")   # not in the paper's Table II: our numbers, empty paper cells
    assert gc["auc_d"] == pytest.approx(27.5) and gc["paper_auc_d"] is None
    assert "paper_drop" not in df.columns and "drop" in df.columns   # the paper prints no Drop% in Table II
    cols = list(df.columns)
    assert cols[cols.index("auc_d") + 1: cols.index("auc_d") + 9] == [
        "auc_d_ci95", "paper_auc_d", "auc_d_minus_scan", "auc_d_minus_scan_ci95", "auc_d_minus_centre",
        "auc_d_minus_centre_ci95", "auc_d_minus_random", "auc_d_minus_random_ci95"]
    assert scan["auc_d_minus_centre"] == pytest.approx(8.1) and scan["auc_d_minus_centre_ci95"] == "[8.10, 8.10]"
    # beats the centre prior / the random map: SCAN by a constant 8.1 / by [25.55, 41.6]; the controls themselves
    assert scan["beats"] == "yes / yes" and _row(df, backbone=CNN, method="centre")["beats"].startswith("- / ")
    assert _row(df, backbone=CNN, method="random")["beats"].endswith(" / -")
    assert "| beats" in markdown(t["II"]) and "yes / yes" in markdown(t["II"])
    assert gc["auc_d_minus_scan"] == pytest.approx(-6.6) and gc["auc_d_minus_scan_ci95"].startswith("[-")
    centre = _row(df, backbone=CNN, method="centre")   # the second calibration row, right after random
    assert list(df.loc[df["backbone"] == CNN, "method"])[-2:] == ["random", "centre"]
    assert centre["auc_d"] == pytest.approx(26.0) and centre["paper_auc_d"] is None
    assert any("paired-bootstrap" in n for n in t["II"].notes)
    assert not (df["backbone"] == VIT).any()
    # paper rows no method of ours pairs with are listed as reference rows (XGradCAM, GradCAM++, RISE here)
    assert set(df.loc[df["backbone"] == "paper", "method"]) == {"xgradcam", "gradcam++", "rise"}


def test_table1_vit_beside_vit_b16_with_reference_rows(built):
    _, _, t = built
    df = t["I"].df
    ra = _row(df, backbone=VIT, method="raw_attention")
    assert ra["auc_d"] == pytest.approx(15.0) and ra["paper_auc_d"] == pytest.approx(21.56)
    assert ra["paper_drop"] == pytest.approx(68.26) and ra["paper_ref"] == "ViT-B/16, ImageNet (Table I)"
    rnd = _row(df, backbone=VIT, method="random")   # pairs with the paper's Sec. IV.A calibration numbers
    assert rnd["paper_pos_auc"] == pytest.approx(14.15) and "Sec. IV.A" in rnd["paper_ref"]
    lrp = _row(df, backbone=VIT, method="lrp")     # ours, beside the paper's LRP row (ImageNet)
    assert lrp["auc_d"] == pytest.approx(3.0) and lrp["paper_auc_d"] == pytest.approx(1.55)
    ref = df[(df["backbone"] == "paper") & (df["method"] == "lrp")]   # CUB, Food-101: reference rows
    assert len(ref) == 2 and ref["auc_d"].isna().all()
    part = df[(df["backbone"] == "paper") & (df["method"] == "partial_lrp")]   # not run in this fixture
    assert len(part) == 3 and part["auc_d"].isna().all()
    cub_scan = df[(df["backbone"] == "paper") & (df["method"] == "scan") & df["paper_ref"].str.contains("CUB")]
    assert len(cub_scan) == 1 and cub_scan.iloc[0]["paper_auc_d"] == pytest.approx(77.80)
    # on CUB data our rows pair with the paper's CUB rows
    cub = build_tables(built[0], {**PARAMS, "data": {"root": "x/CUB_200_2011"}})[0]
    assert "on CUB-200-2011" in cub.title
    assert _row(cub.df, backbone=VIT, method="scan")["paper_auc_d"] == pytest.approx(77.80)


def test_table3_scan_vs_best_baseline(built):
    _, _, t = built
    df = t["III"].df
    ours = df[df["backbone"] == CNN]
    assert list(ours["method"]) == ["scan", "layercam", "lime"]     # the centre prior is no candidate
    assert list(ours["role"]) == ["SCAN", "best baseline", "LIME"]
    best = _row(df, backbone=CNN, method="layercam")               # SCAN vs the best baseline, paired
    assert best["auc_d_minus_scan"] == pytest.approx(32.0 - 34.1) and best["auc_d_minus_scan_ci95"].startswith("[")
    assert _row(df, backbone=VIT, method="transformer_attribution")["paper_auc_d"] == pytest.approx(37.13)
    dino = df[(df["backbone"] == "paper") & df["paper_ref"].str.startswith("DINO")]
    assert set(dino["method"]) == {"transformer_attribution", "lime", "scan"}
    assert _row(dino, method="scan")["paper_auc_d"] == pytest.approx(40.43)


def test_table4_sanity(built):
    _, _, t = built
    df = t["IV"].df
    rw = _row(df, backbone=CNN, method="scan", setting="random_weights")
    assert rw["auc_d"] == pytest.approx(0.3) and rw["paper_auc_d"] == pytest.approx(0.01)
    assert _row(df, backbone=CNN, method="layercam", setting="random_label")["paper_auc_d"] == pytest.approx(32.58)
    assert _row(df, backbone=VIT, method="scan", setting="original")["paper_auc_d"] is None  # paper: CNN only
    assert list(df.loc[df["backbone"] == CNN, "setting"])[:3] == ["original", "random_weights", "random_label"]


def test_sanity_similarity_table_beside_table4(built):
    results, _, _ = built
    tables = build_tables(results, PARAMS)
    stems = [t.stem for t in tables]
    assert stems[stems.index("table4") + 1] == "sanity_similarity"
    t = tables[stems.index("sanity_similarity")]
    df = t.df
    cnn_scan = df[(df["backbone"] == CNN) & (df["method"] == "scan")]
    # cascading by depth, then the random label, then independent from the stem up
    assert list(zip(cnn_scan["randomisation"], cnn_scan["setting"])) == [
        ("cascading", "0"), ("cascading", "0.5"), ("cascading", "1"), ("random_label", ""), ("other_image", ""),
        *(("independent", g) for g in SANITY_GROUPS)]
    full = _row(df, backbone=CNN, method="scan", randomisation="cascading", setting="1")
    assert full["spearman"] == pytest.approx(0.1) and full["spearman_ci95"] == "[0.05, 0.15]"
    assert full["ssim"] == pytest.approx(0.05) and full["hog"] == pytest.approx(0.2)
    assert full["n_groups"] == 4 and full["n_constant"] == 1 and full["n_images"] == 4
    assert _row(df, backbone=CNN, method="layercam", randomisation="independent", setting="blocks.1")["spearman"] \
        == pytest.approx(0.6)
    # LayerCAM before SCAN (the paper's order), as in Table IV
    assert list(dict.fromkeys(df.loc[df["backbone"] == CNN, "method"])) == ["layercam", "scan"]
    # the note quotes every method after full randomisation, from the results
    note = next(n for n in t.notes if n.startswith(CNN))
    assert "LayerCAM Spearman 0.4 (another image's map: 0.2), SSIM 0.2, HOG 0.5" in note
    assert "SCAN Spearman 0.1 (another image's map: 0.2), SSIM 0.05, HOG 0.2" in note
    md = markdown(t)
    assert "| randomisation" in md and "cascading" in md


def test_no_sanity_similarity_table_without_its_results(built):
    results, _, _ = built
    stems = [t.stem for t in build_tables(results[results["part"] != "sanity_maps"], PARAMS)]
    assert "sanity_similarity" not in stems and "table4" in stems


def test_ablation_tables_pair_settings_with_the_paper(built):
    _, _, t = built
    vi = t["VI"].df
    assert list(vi.loc[vi["backbone"] == CNN, "setting"]) == ["2", "4", "8"]
    assert _row(vi, backbone=CNN, setting="2")["paper_auc_d"] == pytest.approx(35.26)
    assert _row(vi, backbone=VIT, setting="8")["paper_auc_d"] == pytest.approx(34.30)
    ref16 = vi[(vi["backbone"] == "paper") & (vi["setting"] == "16")]   # not run here: reference rows
    assert sorted(ref16["paper_auc_d"]) == pytest.approx([14.00, 31.20])
    vii = t["VII"].df
    assert _row(vii, backbone=VIT, setting="alt2")["paper_auc_d"] == pytest.approx(34.56)  # deeper = 9th block
    assert _row(vii, backbone=VIT, setting="alt1")["paper_auc_d"] == pytest.approx(33.10)  # shallower = 3rd
    # EfficientNet-Lite0 by name (its SCAN layer is blocks.5): alt2 = blocks.4, the last 14x14 conv; alt1 =
    # conv_head, deeper than any layer the paper ablated
    assert _row(vii, backbone=CNN, setting="alt2")["paper_auc_d"] == pytest.approx(36.36)
    assert pd.isna(_row(vii, backbone=CNN, setting="alt1")["paper_auc_d"])
    assert "alpha = 4" in t["VII"].title
    viii = t["VIII"].df
    assert list(viii[viii["backbone"] == CNN]["setting"]) == ["0", "50", "95"]
    assert _row(viii, backbone=VIT, setting="95")["paper_neg_auc"] == pytest.approx(49.29)
    ix = t["IX"].df
    assert _row(ix, backbone=CNN, setting="alpha1")["paper_auc_d"] == pytest.approx(4.19)
    assert (ix["paper_row"] == "w/o Gaussian Blur").sum() == 1
    assert all(isinstance(v, int) for v in vii["n_images"] if v is not None)   # counts stay counts


def test_ablation_rows_carry_their_paired_difference_to_the_reference_setting(built):
    """Each ablation row minus its kind's reference (alpha 4, default layer, P 95, full SCAN) on the same images,
    with the paired-bootstrap interval and whether it excludes 0; the reference row reads `ref`."""
    results, _, t = built
    vii = t["VII"].df
    same = _row(vii, backbone=VIT, setting="alt2")            # equal to default on every image
    assert same["auc_d_minus_ref"] == 0.0 and same["auc_d_minus_ref_ci95"] == "[0.00, 0.00]"
    assert same["differs"] == "no"                            # [0, 0] contains 0
    shifted = _row(vii, backbone=VIT, setting="alt1")         # 4 points below default on every image
    assert shifted["auc_d_minus_ref"] == pytest.approx(-4.0) and shifted["auc_d_minus_ref_ci95"] == "[-4.00, -4.00]"
    assert shifted["differs"] == "yes"
    assert _row(vii, backbone=VIT, setting="default")["differs"] == "ref"
    assert _row(t["IX"].df, backbone=CNN, setting="full")["differs"] == "ref"
    assert _row(t["VIII"].df, backbone=CNN, setting="95")["differs"] == "ref"
    # alpha 8: 3 points lower on average, but image by image its differences scatter across 0
    row = _row(results, part="ablation_alpha", backbone=VIT, setting="8", metric="auc_d_minus_ref")
    ci = paired_bootstrap_ci(_ablation_per_image("alpha", "8"), _ablation_per_image("alpha", "4"), 300, seed=0)
    assert row["value"] == pytest.approx(-3.0) and (row["ci_lo"], row["ci_hi"]) == pytest.approx(tuple(ci), abs=1e-9)
    assert ci[0] < 0 < ci[1] and _row(t["VI"].df, backbone=VIT, setting="8")["differs"] == "no"
    # the Markdown stays narrow: the paired columns beside ours and the paper's AUC-D; the CSV holds the rest
    for number in ("VI", "VII", "VIII", "IX"):
        md = markdown(t[number])
        widths = [len(line) for line in md.splitlines() if line.startswith("|")]
        assert max(widths) <= 130, (number, max(widths))
        assert "| differs" in md.splitlines()[2] and "neg_auc" not in md and "auc_d_minus_ref_ci95" not in md
        assert re.search(r"\| +-?\d+\.\d \[-?\d+\.\d, -?\d+\.\d\] \| (yes|no|ref) ", md)   # the paired interval
        assert {"neg_auc", "pos_auc", "auc_d_ci95", "paper_ref", "n_images", "differs"} <= set(t[number].df.columns)
    assert all(k not in t["I"].df.columns for k in ("differs", "auc_d_minus_ref"))   # ablation tables only


def test_ablation_pairs_need_the_same_images_and_per_image_values(tmp_path):
    res = make_results_tree(tmp_path)
    path = res / "ablation" / "components" / CNN / "no_mask.json"
    data = json.loads(path.read_text())
    _write(path, {**data, "per_image": {**data["per_image"], "index": [11, 25, 31, 41]}})
    with pytest.raises(ScanbenchError, match=r"effnet_lite0: the components ablation scored no_mask and full on "
                                             r"different images.*re-run `ablate_components`"):
        load_paired(res, PARAMS)
    del data["per_image"]
    _write(path, data)
    with pytest.raises(ScanbenchError, match=r"no_mask\.json \(stage `ablate_components`: re-run it\) has no "
                                             r"per-image AUC-D"):
        load_paired(res, PARAMS)


def test_the_p_sweep_runs_on_every_backbone(tmp_path):
    """The P sweep re-uses the main decoders: every backbone, even where the decoder-training ablations (alpha,
    layer, components) run on fewer."""
    params = {**PARAMS, "ablation": {**PARAMS["ablation"], "backbones": [VIT]}}
    kinds = {(f.part, f.backbone) for f in result_files(params) if f.part.startswith("ablation_")}
    assert kinds == {("ablation_p", CNN), ("ablation_p", VIT), ("ablation_alpha", VIT), ("ablation_layer", VIT),
                     ("ablation_components", VIT)}
    m = build_metrics(load_results_with_pairs(make_results_tree(tmp_path, params), params))
    assert list(m["ablation_p"]) == [CNN, VIT] and list(m["ablation_alpha"]) == [VIT]


def test_layer_ablation_pairs_with_the_paper_at_the_alpha_it_ran(tmp_path):
    res = make_results_tree(tmp_path)
    path = res / "ablation" / "layer" / VIT / "default.json"
    _write(path, {**json.loads(path.read_text()), "alpha": 8.0})
    vii = next(t for t in build_tables(load_results(res, PARAMS), PARAMS) if t.number == "VII")
    assert _row(vii.df, backbone=VIT, setting="default")["paper_auc_d"] == pytest.approx(34.30)   # alpha = 8
    assert _row(vii.df, backbone=VIT, setting="alt1")["paper_auc_d"] == pytest.approx(33.10)      # alpha = 4


def test_tables_without_results_of_ours_show_the_paper_alone(tmp_path):
    params = {**PARAMS, "backbones": [CNN], "families": {"cnn": [CNN], "vit": []}, "ablation": {"backbones": []}}
    tables = {t.number: t for t in build_tables(load_results(make_results_tree(tmp_path, params), params), params)}
    for number in ("I", "VI", "VII", "VIII", "IX"):
        df = tables[number].df
        assert (df["backbone"] == "paper").all() and df["paper_auc_d"].notna().sum() >= 5, number
        assert any("No results of ours" in n for n in tables[number].notes)
    assert (tables["II"].df["backbone"] == CNN).any()


def test_timing_table_for_the_timing_stage(tmp_path):
    timings = {b: {"device": "cpu (2 cores)", "n_images": 32, "methods": {
        m: {"ms_per_image": 10.0 * (k + 1), "ms_iqr": [9.0 * (k + 1), 11.0 * (k + 1)], "n_images": 32,
            "ms_per_image_batched": 5.0 * (k + 1), "ratio_to_gradcam": (k + 1) / 2}
        for k, m in enumerate(["gradcam", "lime", "scan"])}} for b in (CNN, VIT)}
    t = timing_table(timings, PARAMS)
    lime = _row(t.df, backbone=CNN, method="lime")
    assert lime["ms_per_image"] == 20.0 and lime["paper_ms_per_image"] == pytest.approx(1187.5)
    assert lime["ms_per_image_iqr"] == "[18.00, 22.00]" and lime["ratio_to_gradcam"] == 1.0
    assert _row(t.df, backbone=VIT, method="lime")["paper_ms_per_image"] is None   # the paper timed ResNet50V2
    assert set(t.df.loc[t.df["backbone"] == "paper", "method"]) == {"xgradcam", "gradcam++", "layercam", "rise"}
    assert any("cpu (2 cores)" in n for n in t.notes)
    csv_path, md_path = write_timing_table(timings, PARAMS, tmp_path / "timing")
    assert (csv_path.name, md_path.name) == ("table5.csv", "README.md")
    assert md_path.read_text().startswith("## Table V") and "1187.50" in md_path.read_text()


# ------------------------------------------------------------------------------------------------ rendering

def test_one_number_format():
    assert [fmt(v) for v in (None, float("nan"), 4, np.int64(50), 34.1, 0.0, -0.01, 0.1411, 0.35, 1187.5, "x")] == \
        ["", "", "4", "50", "34.10", "0.00", "-0.01", "0.141", "0.35", "1187.50", "x"]
    assert [fmt(v) for v in (7.105e-15, -0.0, -3e-12, 2e-6)] == ["0.00", "0.00", "0.00", "2e-06"]


def test_writers_csv_and_markdown(tmp_path, built):
    _, _, t = built
    csv_path, md_path = write_table(t["II"], tmp_path / "tables")
    assert (csv_path.name, md_path.name) == ("table2.csv", "table2.md")
    csv = pd.read_csv(csv_path)
    scan = csv[(csv["backbone"] == CNN) & (csv["method"] == "scan")].iloc[0]
    assert scan["auc_d"] == pytest.approx(34.1) and scan["paper_auc_d"] == pytest.approx(37.29)
    assert np.isnan(csv[(csv["backbone"] == CNN) & (csv["method"] == "gradcam")].iloc[0]["paper_auc_d"])
    md = markdown(t["II"])
    assert md.startswith("## Table II") and "| scan" in md and "37.3" in md and "34.1 [" in md   # one decimal
    assert md_path.read_text() == md and "Notes:" in md


def test_paper_values_are_internally_consistent_and_in_the_paper():
    recs = yaml.safe_load((REPO / "src/scanbench/report/paper_values.yaml").read_text())["records"]
    assert len(recs) == 102
    for r in recs:
        if all(k in r for k in ("auc_d", "neg_auc", "pos_auc")):  # AUC-D = Neg - Pos, up to print rounding
            assert r["neg_auc"] - r["pos_auc"] == pytest.approx(r["auc_d"], abs=0.03), r
    paper = load_paper()
    assert len(paper.values) == sum(k in r for r in recs for k in ("auc_d", "neg_auc", "pos_auc", "drop", "inc",
                                                                    "win", "ms_per_image"))
    v = paper.values
    sel = v[(v["table"] == "VII") & (v["model"] == "ViT-B/16") & (v["setting"] == "default") & (v["alpha"] == "8")
            & (v["metric"] == "auc_d")]
    assert sel["value"].tolist() == pytest.approx([34.30])
    if not PAPER_TXT.exists():
        pytest.skip("paper text not available")
    printed = {float(x) for x in re.findall(r"-?\d+\.\d+(?=ms|%)", PAPER_TXT.read_text())}
    for r in recs:
        for k in ("auc_d", "neg_auc", "pos_auc", "drop", "inc", "win", "ms_per_image"):
            if k in r:
                assert float(r[k]) in printed, (r["table"], r["paper_row"], k)


# ------------------------------------------------------------------------------------------------ stage script

def run_report_stage(cwd: Path, monkeypatch, *args: str) -> None:
    """Run the report stage in this process (a subprocess would pay the torch import again), as `python -m` does."""
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["report.py", *args])
    runpy.run_module("scanbench.stages.report", run_name="__main__", alter_sys=True)


def test_report_stage_end_to_end(tmp_path, monkeypatch):
    params = yaml.safe_load((REPO / "profiles" / "default.yaml").read_text())
    params.update({k: PARAMS[k] for k in ("backbones", "families", "sanity", "ablation", "scaling")})
    params["explain"]["baselines"] = PARAMS["explain"]["baselines"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    make_results_tree(tmp_path, params)           # results/default/: --results defaults to results/<profile>
    _write(tmp_path / "results" / "smoke" / "targets" / f"{CNN}.json", {"val_top1": 1.0})   # another run's
    run_report_stage(tmp_path, monkeypatch, "--no-figures")
    out = tmp_path / "reports"
    assert sorted(p.stem for p in (out / "metrics").glob("*.json")) == sorted(
        ["explanations", "sanity", "sanity_maps", "scan_training", "targets", "calibration", "ablation_alpha",
         "ablation_layer", "ablation_p", "ablation_components", "grid", "summary"])   # no timing.json: the timing
    # stage's
    assert json.loads((out / "metrics" / "targets.json").read_text())[CNN]["val_top1"] == 97.5
    assert sorted(p.name for p in (out / "tables").glob("*.md")) == sorted(
        [f"table{i}.md" for i in (1, 2, 3, 4, 6, 7, 8, 9, 10)]     # 10: the data-scaling table (ours)
        + ["sanity_similarity.md", f"table11_{CNN}.md", f"table11_{VIT}.md"])   # 11: the grid pointing game
    table10 = pd.read_csv(out / "tables" / "table10.csv")
    assert list(table10["setting"]) == [10, 40] * 2 and list(table10["auc_d"]) == [5.0, 12.5] * 2
    readme = (out / "README.md").read_text()
    assert "profile: `default`" in readme and "`results/default/`" in readme and "ties count" in readme
    assert "(tables/table1.md)" in readme and "](timing/README.md)" in readme and "EfficientNet-Lite0" in readme
    assert readme.index("(tables/table4.md)") < readme.index("(tables/sanity_similarity.md)") < readme.index(
        "(tables/table6.md)")
    # the headline: SCAN [interval], the centre prior, SCAN - centre prior and best - SCAN with paired intervals
    row = next(line for line in readme.splitlines() if line.startswith(f"| {CNN} |"))
    lo, hi = json.loads((out / "metrics" / "explanations.json").read_text())[CNN]["methods"]["layercam"][
        "auc_d_minus_scan_ci95"]
    assert row == (f"| {CNN} | 4 | 34.1 [31.1, 37.1] | 26.0 [23.0, 29.0] | 8.1 [8.1, 8.1] | "
                   f"LayerCAM | -2.1 [{lo:.1f}, {hi:.1f}] | 0.1 |")
    # every Markdown table of the report stays readable: at most 130 characters a row (the CSVs hold the rest)
    for md in [out / "README.md", out / "claims.md", *(out / "tables").glob("*.md")]:
        rows = [line for line in md.read_text().splitlines() if line.startswith("|")]
        assert max(map(len, rows)) <= 130, (md.name, max(rows, key=len))
    assert "centre-prior baseline" in readme and "sigma = 0.25" in readme
    # the claims, judged: claims.md (linked from the README) and the verdicts as numbers in summary.json
    assert (out / "claims.md").read_text().startswith("# The paper's claims, tested") and "](claims.md)" in readme
    verdicts = json.loads((out / "metrics" / "summary.json").read_text())["claims"]
    assert verdicts["scan_vs_best_cam"][CNN] in (-1, 0, 1) and verdicts["ablation_p"][CNN] == 1

    (tmp_path / "results" / "default" / "diagnostics" / f"{VIT}.json").unlink()
    with pytest.raises(SystemExit) as exit_info:   # a one-line error, exit 2 (scanbench.stages._cli.run_stage)
        run_report_stage(tmp_path, monkeypatch, "--no-figures")
    assert exit_info.value.code == 2


def _md5(path: Path) -> str:
    import hashlib
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_report_refuses_results_of_another_data_root(tmp_path, monkeypatch, capsys):
    """Two data roots: the evaluate result was made from root A's manifest, params.yaml and data/ now hold root
    B's (the other stages' results were made outside DVC: no lock entry, not checked). One line, exit 2."""
    params = yaml.safe_load((REPO / "profiles" / "default.yaml").read_text())
    params.update({k: PARAMS[k] for k in ("backbones", "families", "sanity", "ablation", "scaling")})
    params["explain"]["baselines"] = PARAMS["explain"]["baselines"]
    params["data"]["root"] = "/data/root_b"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    make_results_tree(tmp_path, params)
    (tmp_path / "data").mkdir()
    manifest = tmp_path / "data" / "manifest.csv"
    manifest.write_text("path,label\nb/1.JPEG,0\n")           # root B's manifest, now in the workspace
    result = "results/default/evaluate/effnet_lite0/scan.json"
    entry = {"cmd": "python -m scanbench.stages.evaluate",
             "deps": [{"path": "data/manifest.csv", "hash": "md5", "md5": "0" * 32, "size": 20}],   # root A's
             "params": {"params.yaml": {"data.root": "/data/root_a"}},
             "outs": [{"path": result, "hash": "md5", "md5": _md5(tmp_path / result), "size": 1}]}
    lock = tmp_path / "dvc.lock"

    def report_error(stage_entry: dict) -> str:
        lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"evaluate_scan@effnet_lite0": stage_entry}}))
        with pytest.raises(SystemExit) as exit_info:
            run_report_stage(tmp_path, monkeypatch, "--no-figures")
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert "Traceback" not in err and len(err.splitlines()) == 1, err
        return err

    err = report_error(entry)                                   # params first: data.root
    assert f"{result} was made by `evaluate_scan@effnet_lite0` with data.root = '/data/root_a'" in err
    assert "dvc repro evaluate_scan@effnet_lite0" in err
    entry["params"]["params.yaml"]["data.root"] = "/data/root_b"     # same params, root A's manifest
    err = report_error(entry)
    assert "from a data/manifest.csv that has changed since" in err and "evaluate_scan@effnet_lite0" in err
    entry["deps"][0]["md5"] = _md5(manifest)                      # consistent: the report renders
    (tmp_path / result).write_text((tmp_path / result).read_text() + " ")   # ... unless the file was re-written
    err = report_error(entry)
    assert "is not the file `evaluate_scan@effnet_lite0` wrote" in err
    entry["outs"][0]["md5"] = _md5(tmp_path / result)
    lock.write_text(yaml.safe_dump({"schema": "2.0", "stages": {"evaluate_scan@effnet_lite0": entry}}))
    run_report_stage(tmp_path, monkeypatch, "--no-figures")
    assert (tmp_path / "reports" / "README.md").exists()


# ---------------------------------------------------------------- the grid pointing game (Table XI, grid.json)

GRID_RUN = {**PARAMS, "grid": GRID_PARAMS}


@pytest.fixture(scope="module")
def grid_results(tmp_path_factory):
    res = make_results_tree(tmp_path_factory.mktemp("grid"), GRID_RUN)
    return res, load_results_with_pairs(res, GRID_RUN)


def test_grid_table_per_backbone_with_paired_differences(grid_results):
    _, results = grid_results
    tables = {t.stem: t for t in build_tables(results, GRID_RUN) if t.number == "XI"}
    assert sorted(tables) == [f"table11_{CNN}", f"table11_{VIT}"]
    cnn = tables[f"table11_{CNN}"].df.set_index("method")
    assert list(cnn.index) == ["gradcam", "layercam", "lime", "scan", "random", "centre"]   # registry order
    assert cnn.at["centre", "share"] == 0.25 and cnn.at["centre", "pointing"] == 0.0
    assert cnn.at["gradcam", "share"] == pytest.approx(0.7) and cnn.at["lime", "share"] == pytest.approx(0.3)
    assert cnn.at["scan", "share_minus_scan"] == 0 and cnn.at["scan", "share_minus_scan_ci95"] == "[0.00, 0.00]"
    # best baseline by share: Grad-CAM (SCAN and the calibration rows are not candidates)
    assert cnn.at["gradcam", "share_minus_best"] == 0
    assert cnn.at["scan", "share_minus_best"] == pytest.approx(-0.1)
    # LIME = the centre prior + 0.05 on every tile: a paired interval of one point
    assert cnn.at["lime", "share_minus_centre"] == pytest.approx(0.05)
    assert cnn.at["lime", "share_minus_centre_ci95"] == "[0.05, 0.05]"
    assert cnn.at["lime", "beats"] == "yes / n.s."   # beside the random map: 0.3 - (0.25 + noise)
    assert cnn.at["gradcam", "beats"] == "yes / yes" and cnn.at["centre", "beats"].startswith("- /")
    assert cnn.at["random", "beats"].endswith("/ -") and cnn.at["random", "beats"].startswith("n.s.")
    assert cnn.at["scan", "label"] == "SCAN" and cnn.at["centre", "label"] == "Centre prior"
    assert cnn.at["scan", "n_mosaics"] == 6 and cnn.at["scan", "in_top4"] == 1.0
    vit = tables[f"table11_{VIT}"]
    assert vit.notes[0] == f"{VIT}: 6 mosaics of 224 px; best baseline by share: Explainability."


def test_grid_markdown_is_narrow_and_the_csv_has_every_column(grid_results, tmp_path):
    _, results = grid_results
    table = next(t for t in build_tables(results, GRID_RUN) if t.stem == f"table11_{VIT}")
    md = markdown(table)
    rows = [line for line in md.splitlines() if line.startswith("|")]
    assert max(len(line) for line in rows) <= 130, max(rows, key=len)
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header == ["label", "share", "pointing", "share_minus_scan", "share_minus_best", "beats"]
    assert any("Explainability" in line and " [" in line for line in rows)   # value [lo, hi] in one cell
    csv_path, _ = write_table(table, tmp_path)
    csv = pd.read_csv(csv_path)
    assert {"share_ci95", "pointing_minus_scan", "pointing_minus_best_ci95", "share_minus_random", "in_top4",
            "n_mosaics", "method"} <= set(csv.columns)


def test_grid_metrics_are_objects_keyed_by_name(grid_results):
    _, results = grid_results
    grid = build_metrics(results)["grid"]
    assert sorted(grid) == sorted([CNN, VIT])
    cnn = grid[CNN]
    assert cnn["n_mosaics"] == 6 and cnn["best_baseline"] == "gradcam" and isinstance(cnn["methods"], dict)
    rec = cnn["methods"]["lime"]
    assert rec["share"] == 0.3 and rec["share_minus_centre"] == 0.05 and rec["share_minus_centre_ci95"] == [0.05,
                                                                                                          0.05]
    assert len(rec["share_ci95"]) == 2 and rec["in_top4"] == 1.0 and "pointing_minus_best_ci95" in rec
    assert grid[VIT]["best_baseline"] == "transformer_attribution"


def test_grid_results_missing_or_on_other_mosaics_are_one_line(grid_results, tmp_path):
    res, _ = grid_results
    path = res / "grid" / CNN / "lime.json"
    data = json.loads(path.read_text())
    other = tmp_path / "results"
    shutil.copytree(res, other)
    (other / "grid" / CNN / "lime.json").unlink()
    with pytest.raises(ScanbenchError, match="is missing: run the `grid_cnn` stage") as err:
        load_results_with_pairs(other, GRID_RUN)
    assert "\n" not in str(err.value)
    _write(other / "grid" / CNN / "lime.json", {**data, "mosaics": GRID_MOSAICS[::-1]})
    with pytest.raises(ScanbenchError, match="different mosaics: re-run the grid stages"):
        load_results_with_pairs(other, GRID_RUN)


def test_provenance_reads_param_values_as_dvc_writes_them(tmp_path):
    """DVC writes the lock in YAML 1.2 (`1e-06`, a float there, a string to PyYAML): the same value, not a change."""
    from scanbench.report.provenance import check_provenance

    (tmp_path / "params.yaml").write_text("explain:\n  lrp: {rule: alpha_beta, epsilon: 1.0e-06}\nseed: 0\n")
    out = tmp_path / "results" / "r.json"
    out.parent.mkdir()
    out.write_text("{}")
    lock = {"schema": "2.0", "stages": {"s@b": {
        "cmd": "x", "params": {"params.yaml": {"explain.lrp": {"rule": "alpha_beta", "epsilon": 1e-06}, "seed": 0}},
        "outs": [{"path": "results", "hash": "md5", "md5": "0" * 32 + ".dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock).replace("1.0e-06", "1e-06"))
    assert check_provenance(["results/r.json"], root=tmp_path) == 1          # a folder output: its stage checked
    (tmp_path / "params.yaml").write_text("explain:\n  lrp: {rule: alpha_beta, epsilon: 1.0e-05}\nseed: 0\n")
    with pytest.raises(ScanbenchError, match=r"results/r.json was made by `s@b` with explain.lrp = "):
        check_provenance(["results/r.json"], root=tmp_path)
    (tmp_path / "params.yaml").write_text("explain:\n  lrp: {rule: alpha_beta, epsilon: 1.0e-06}\n")   # seed gone
    with pytest.raises(ScanbenchError, match=r"with seed = 0, but params.yaml now has \(absent\)"):
        check_provenance(["results/r.json"], root=tmp_path)
    assert check_provenance(["elsewhere/r.json"], root=tmp_path) == 0        # no stage wrote it: not checked
