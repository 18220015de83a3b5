"""reports/claims.md and summary.json's `claims`: the verdict rules, the rows built from a synthetic run (the
results tree of test_report_tables), the rows a run without ablations or grid skips, and the numeric verdicts."""
from __future__ import annotations

import math

import pytest

from scanbench.report.claims import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_IN_RUN,
    NOT_TESTED,
    SUPPORTED,
    build_claims,
    claims_summary,
    render_claims,
    verdict_collapse,
    verdict_near_zero,
    verdict_point_near_zero,
    verdict_point_positive,
    verdict_positive,
    verdict_reference_best,
)
from scanbench.report.metrics import build_metrics
from scanbench.report.paired import load_results_with_pairs
from scanbench.report.results import families_of
from test_report_tables import CNN, GRID_RUN, PARAMS, VIT, make_results_tree


def test_paired_rule_interval_above_below_or_containing_zero():
    assert verdict_positive([0.5, 2.0]) == SUPPORTED
    assert verdict_positive([-2.0, -0.1]) == CONTRADICTED
    assert verdict_positive([-1.0, 1.0]) == INCONCLUSIVE
    assert verdict_positive([0.0, 0.0]) == INCONCLUSIVE      # equal image by image: not separated
    assert verdict_positive(None) == NOT_IN_RUN
    assert verdict_positive([math.nan, 1.0]) == NOT_IN_RUN


def test_near_zero_rule_against_the_margin():
    assert verdict_near_zero([-1.0, 1.5], margin=2.0) == SUPPORTED
    assert verdict_near_zero([2.5, 4.0], margin=2.0) == CONTRADICTED
    assert verdict_near_zero([-6.0, -3.0], margin=2.0) == CONTRADICTED
    assert verdict_near_zero([-1.0, 3.0], margin=2.0) == INCONCLUSIVE
    assert verdict_near_zero(None) == NOT_IN_RUN
    assert verdict_point_near_zero(0.5) == SUPPORTED and verdict_point_near_zero(-10.0) == CONTRADICTED
    assert verdict_point_near_zero(None) == NOT_IN_RUN
    assert verdict_point_positive(5.0) == SUPPORTED and verdict_point_positive(-5.0) == CONTRADICTED
    assert verdict_point_positive(1.0) == INCONCLUSIVE


def test_reference_best_and_map_collapse_rules():
    assert verdict_reference_best({"2": [-3.0, -1.0], "8": [-5.0, -0.5]}) == SUPPORTED
    assert verdict_reference_best({"2": [-3.0, -1.0], "8": [0.2, 1.0]}) == CONTRADICTED   # one row beats it
    assert verdict_reference_best({"2": [-3.0, -1.0], "8": [-1.0, 1.0]}) == INCONCLUSIVE
    assert verdict_reference_best({"2": None}) == NOT_IN_RUN
    assert verdict_collapse([0.1, 0.3], [0.2, 0.5]) == SUPPORTED
    assert verdict_collapse([0.6, 0.9], [0.2, 0.5]) == CONTRADICTED
    assert verdict_collapse([0.3, 0.6], [0.2, 0.5]) == INCONCLUSIVE
    assert verdict_collapse(None, [0.2, 0.5]) == NOT_IN_RUN


def _claims(tmp_path, params):
    results = load_results_with_pairs(make_results_tree(tmp_path, params), params)
    metrics = build_metrics(results)
    return metrics, build_claims(results, metrics, params, families_of(params))


def test_claims_on_a_synthetic_run(tmp_path):
    metrics, claims = _claims(tmp_path, GRID_RUN)
    by_key = {c.key: c for c in claims}
    expl = metrics["explanations"][CNN]["methods"]
    # SCAN vs the best CAM (LayerCAM here): the interval is LayerCAM - SCAN's, negated
    lo, hi = expl["layercam"]["auc_d_minus_scan_ci95"]
    row = by_key[("scan_vs_best_cam", CNN)]
    assert row.method == "layercam" and row.verdict == verdict_positive([-hi, -lo]) and "vs LayerCAM" in row.paper
    assert by_key[("scan_vs_best_baseline", VIT)].method == "transformer_attribution"
    # the ablations (test_report_tables: P and components differ from the reference by a constant, all below it;
    # alpha 8 scatters across 0; layer alt2 equals default image by image)
    assert by_key[("ablation_p", CNN)].verdict == SUPPORTED
    assert by_key[("ablation_components", CNN)].verdict == SUPPORTED
    assert by_key[("ablation_alpha", CNN)].verdict == INCONCLUSIVE
    assert by_key[("ablation_layer", CNN)].verdict == INCONCLUSIVE
    assert by_key[("timing",)].verdict == NOT_TESTED
    # every method against the centre prior; SCAN's grid share against the best baseline and the centre prior
    centre = [c for c in claims if c.key[0] == "beats_centre"]
    assert {c.key[2] for c in centre if c.key[1] == CNN} == {"scan", "gradcam", "layercam", "lime"}
    grid = metrics["grid"][CNN]["methods"]["scan"]
    assert by_key[("grid_scan_vs_best", CNN)].verdict == verdict_positive(grid["share_minus_best_ci95"])
    assert by_key[("grid_scan_vs_best", CNN)].method == "gradcam" and ("grid_scan_vs_centre", CNN) in by_key
    assert all(c.verdict in (SUPPORTED, INCONCLUSIVE, CONTRADICTED, NOT_TESTED, NOT_IN_RUN) for c in claims)

    summary = claims_summary(claims)
    assert summary["ablation_p"][CNN] == 1 and summary["ablation_alpha"][CNN] == 0
    assert summary["scan_vs_best_cam"][CNN] == {SUPPORTED: 1, INCONCLUSIVE: 0, CONTRADICTED: -1}[row.verdict]
    assert summary["beats_centre"][CNN]["scan"] in (-1, 0, 1)   # per method: keyed by its name
    assert "timing" not in summary     # an untested claim has no key

    def leaves(node):
        return [x for v in node.values() for x in (leaves(v) if isinstance(v, dict) else [v])]

    assert leaves(summary) and all(v in (-1, 0, 1) and isinstance(v, int) for v in leaves(summary))

    md = render_claims(claims, "test")
    assert md.startswith("# The paper's claims, tested (profile: `test`)") and "Verdict rules" in md
    assert max(len(line) for line in md.splitlines()) <= 130, max(md.splitlines(), key=len)
    assert "| LayerCAM |" in md      # method labels from the registry


def test_a_run_without_ablations_or_grid_skips_their_rows(tmp_path):
    params = {**PARAMS, "ablation": {**PARAMS["ablation"], "backbones": [], "percentiles": []}}
    metrics, claims = _claims(tmp_path, params)
    skipped = {c.key[0] for c in claims if c.verdict == NOT_IN_RUN}
    assert {"ablation_alpha", "ablation_layer", "ablation_p", "ablation_components", "grid"} <= skipped
    summary = claims_summary(claims)
    assert not any(k.startswith(("ablation_", "grid")) for k in summary)
    assert summary["beats_centre"][CNN]["scan"] in (-1, 0, 1)
    assert "not in this run" in render_claims(claims, "test")


@pytest.mark.parametrize("missing", ["explanations", "calibration", "sanity", "sanity_maps"])
def test_missing_parts_read_not_in_this_run(tmp_path, missing):
    params = {**PARAMS, "ablation": {**PARAMS["ablation"], "backbones": [], "percentiles": []}}
    results = load_results_with_pairs(make_results_tree(tmp_path, params), params)
    metrics = {**build_metrics(results), missing: {}}
    if missing == "sanity_maps":
        results = results[results["part"] != "sanity_maps"]
    claims = build_claims(results, metrics, params, families_of(params))
    assert any(c.verdict == NOT_IN_RUN and len(c.key) == 1 for c in claims)
