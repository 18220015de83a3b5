"""Localisation against a concentration-matched prior: the concentration of a map, the centred Gaussian matched to
it, the prior's scores and the paired difference in the evaluate JSON, and the report's localisation table."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from scanbench.boxes import box_mask
from scanbench.errors import ScanbenchError
from scanbench.metrics.localisation import localisation_scores, matched_prior_scores
from scanbench.metrics.matched_prior import (
    SIGMA_RANGE,
    TOP_SHARE,
    centre_prior_map,
    centred_gaussian,
    concentration,
    gaussian_concentration,
    match_sigma,
    top_pixels,
)
from scanbench.report.results import long_table, tidy
from scanbench.report.tables import (
    BEATS_MARGIN,
    CHANCE_ROW,
    LOCALISATION_MD_COLUMNS,
    beats_prior,
    localisation_table,
    markdown,
)


def test_concentration_of_uniform_peaked_and_empty_maps():
    n = 32 * 32
    k = top_pixels(n)
    assert k == round(TOP_SHARE * n)
    maps = np.zeros((4, 32, 32))
    maps[0] = 1.0                                    # uniform: the top share of the pixels holds that share
    maps[1, 5, 7] = 3.0                              # one peak: all the mass
    maps[2] = -1.0                                   # no positive mass: scored as the uniform map
    maps[2, 0, 0] = np.nan
    maps[3, :16] = 1.0                               # half the pixels: k of them hold k / (n / 2)
    c = concentration(maps)
    assert c == pytest.approx([k / n, 1.0, k / n, k / (n / 2)])
    assert concentration(maps, top=0.5)[3] == pytest.approx(1.0)


@pytest.mark.parametrize("h, w", [(224, 224), (64, 64), (48, 80)])
@pytest.mark.parametrize("sigma", [0.05, 0.12, 0.25, 0.6])
def test_matching_recovers_a_known_gaussians_sigma(h, w, sigma):
    target = gaussian_concentration(sigma, h, w)
    found, clamped = match_sigma(target, h, w)
    assert clamped is None
    assert found == pytest.approx(sigma, rel=1e-6)
    assert match_sigma(target, h, w) == (found, clamped)            # deterministic


def test_concentration_falls_strictly_as_sigma_grows():
    sigmas = np.geomspace(0.03, 3.0, 25)
    for size in (224, 64):
        c = [gaussian_concentration(float(s), size, size) for s in sigmas]
        assert all(a > b for a, b in zip(c, c[1:]))
    # min-max normalised, a very wide Gaussian tends to a cap 1 - r^2 / r_max^2, not to the uniform map
    assert 0.19 < gaussian_concentration(SIGMA_RANGE[1], 224, 224) < 0.21


def test_the_prior_is_the_centre_priors_map_as_the_explain_stage_stores_it():
    torch = pytest.importorskip("torch")
    from scanbench.explainers.base import normalize_maps
    from scanbench.explainers.centre import centre_map

    for h, w, s in ((224, 224, 0.25), (112, 112, 0.12), (48, 80, 0.3)):
        assert np.allclose(centred_gaussian(h, w, s), centre_map(h, w, s).to(torch.float64).numpy(), rtol=1e-6,
                           atol=1e-7)
        stored = normalize_maps(centre_map(h, w, s)[None])[0].numpy().astype(np.float16)
        assert np.array_equal(centre_prior_map(h, w, s, stored=True), stored.astype(np.float64))
        assert np.allclose(centre_prior_map(h, w, s), stored, atol=1e-3)


def test_targets_beyond_the_range_clamp_to_the_nearer_end():
    assert match_sigma(1.0, 64, 64) == (SIGMA_RANGE[0], "min")                # one pixel: tighter than any
    constant = concentration(np.ones((1, 64, 64)))[0]
    assert match_sigma(float(constant), 64, 64) == (SIGMA_RANGE[1], "max")   # flat: wider than any
    assert match_sigma(0.19, 64, 64) == (SIGMA_RANGE[1], "max")              # flatter than the widest prior's cap


def _masks(n: int, size: int, box) -> np.ndarray:
    return np.repeat(box_mask(np.array([box]), size, size, size)[None], n, 0)


@pytest.mark.parametrize("size, sigma", [(64, 0.25), (224, 0.12), (112, 0.4)])
def test_a_method_that_is_a_centred_gaussian_ties_its_matched_prior(size, sigma):
    """The centre prior's own maps (min-max normalised, float16, as the maps files store them) are matched by
    themselves: the difference is float16 rounding, a tie for the report's verdict."""
    maps = np.repeat(centre_prior_map(size, size, sigma, stored=True)[None], 12, 0)
    q = size // 64
    masks = np.stack([box_mask(np.array([[x * q, 10 * q, (x + 30) * q, 50 * q]]), size, size, size)
                      for x in range(0, 34, 3)])
    out = matched_prior_scores(maps, masks, n_resamples=200, seed=0)
    assert out["clamped"] is None and out["sigma"] == pytest.approx(sigma, rel=1e-3)
    assert out["concentration_prior"] == pytest.approx(out["concentration_method"], abs=1e-4)
    assert abs(out["energy_diff"]) < 1e-4
    lo, hi = out["energy_diff_ci"]
    assert -1e-4 < lo <= hi < 1e-4                                      # float16 rounding apart, the same map
    assert beats_prior(lo, hi) == "no"
    assert out["pointing_diff"] == pytest.approx(0.0, abs=1e-9)
    assert out == matched_prior_scores(maps, masks, n_resamples=200, seed=0)


def test_a_compact_map_on_the_object_beats_the_prior_and_a_centred_one_ties_it():
    """Objects off the centre: a compact blob on each object beats the Gaussian as compact as it; the same blob at
    the centre is that Gaussian (sigma 4 px of 64), so it ties."""
    size, n = 64, 16
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] + 0.5
    boxes, on, off = [], [], []
    for _ in range(n):
        x0, y0 = rng.integers(0, 20, 2) if rng.random() < 0.5 else rng.integers(40, 48, 2)
        boxes.append(box_mask(np.array([[x0, y0, x0 + 16, y0 + 16]]), size, size, size))
        on.append(np.exp(-((xx - x0 - 8) ** 2 + (yy - y0 - 8) ** 2) / (2 * 4.0 ** 2)))
        off.append(np.exp(-((xx - 32) ** 2 + (yy - 32) ** 2) / (2 * 4.0 ** 2)))
    masks = np.stack(boxes)
    good = matched_prior_scores(np.stack(on), masks, n_resamples=300, seed=1)
    assert good["energy_diff_ci"][0] > 0 and good["energy_diff"] > 0.3
    centred = matched_prior_scores(np.stack(off), masks, n_resamples=300, seed=1)
    assert centred["energy_diff"] == pytest.approx(0.0, abs=1e-3)          # it is its own matched prior
    assert centred["sigma"] == pytest.approx(4.0 / size, rel=1e-3)
    assert good["sigma"] < 0.1                                             # a compact prior, not the 0.25 one


def test_localisation_scores_carry_the_matched_prior_only_for_boxed_images():
    size = 32
    maps = np.repeat(centre_prior_map(size, size, 0.2, stored=True)[None], 3, 0)
    mask = box_mask(np.array([[8, 8, 24, 24]]), size, size, size)
    out = localisation_scores(maps, [mask, None, mask], [4, 5, 6], n_resamples=100, seed=0)
    mp = out["matched_prior"]
    assert len(mp["per_image"]["energy"]) == 2 and mp["top_share"] == TOP_SHARE
    assert mp["energy"] == pytest.approx(out["energy"], abs=1e-4)
    none = localisation_scores(maps, [None] * 3, [4, 5, 6], n_resamples=100, seed=0)
    assert none["matched_prior"] is None


@pytest.mark.parametrize("call, match", [
    (lambda: concentration(np.ones((8, 8))), r"N x H x W maps"),
    (lambda: concentration(np.ones((0, 8, 8))), r"N x H x W maps"),
    (lambda: concentration(np.ones((1, 8, 8)), top=0.0), r"top share of pixels must lie in \(0, 1\)"),
    (lambda: concentration(np.ones((1, 8, 8)), top=1.5), r"top share of pixels must lie in \(0, 1\)"),
    (lambda: match_sigma(float("nan"), 8, 8), r"concentration to match must lie in \(0, 1\]"),
    (lambda: match_sigma(1.2, 8, 8), r"concentration to match must lie in \(0, 1\]"),
    (lambda: match_sigma(0.5, 8, 8, sigma_range=(0.5, 0.1)), r"sigma range"),
    (lambda: centred_gaussian(8, 8, 0.0), r"sigma must be a positive fraction"),
    (lambda: matched_prior_scores(np.ones((2, 8, 8)), np.ones((2, 8, 9), bool), 10, 0), r"same shape"),
])
def test_bad_input_is_one_line(call, match):
    with pytest.raises(ScanbenchError, match=match) as err:
        call()
    assert "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------- the report

def _results(with_prior: bool = True):
    rows = []
    for m, e, diff_ci, conc in (("scan", 0.774, (0.011, 0.037), 0.78), ("gradcam", 0.663, (-0.06, -0.01), 0.78),
                                ("centre", 0.641, (1e-6, 2e-6), 0.78), ("lrp", 0.5, (-0.2, 0.1), 0.16)):
        loc = {"n_images": 200, "n_skipped": 0, "energy": e, "energy_ci": [e - 0.03, e + 0.03], "pointing": 0.8,
               "pointing_ci": [0.7, 0.9], "chance_energy": 0.3, "per_image": {"index": [1, 2]}}
        if with_prior:
            loc["matched_prior"] = {"top_share": 0.14, "sigma": 0.12, "clamped": None, "concentration_method": conc,
                                    "concentration_prior": max(conc, 0.2), "energy": 0.75, "energy_ci": [0.72, 0.78],
                                    "pointing": 0.9, "pointing_ci": [0.85, 0.95], "energy_diff": e - 0.75,
                                    "energy_diff_ci": list(diff_ci), "pointing_diff": -0.1,
                                    "pointing_diff_ci": [-0.2, 0.0], "per_image": {"energy": [0.7, 0.8]}}
        data = {"n_images": 200, "variants": {"fair": {"auc_d": 1.0, "auc_d_ci": [0.5, 1.5]}}, "localisation": loc}
        rows += tidy(data, part="evaluate", backbone="vit_hybrid_lite0", family="vit", method=m, setting="")
    return long_table(rows)


def test_report_table_shows_the_matched_prior_the_paired_difference_and_the_verdict():
    t = localisation_table(_results())
    for c in ("prior", "diff", "diff_ci95", "beats", "prior_sigma", "concentration", "prior_concentration"):
        assert c in t.df.columns
    by = t.df.set_index("method")
    assert by.at["centre", "diff_ci95"] == "[0.00, 0.00]"                  # float16 noise is not printed
    assert by.at["scan", "beats"] == "yes" and by.at["gradcam", "beats"] == "below"
    assert by.at["centre", "beats"] == "no" and by.at["lrp", "beats"] == "no"      # a tie, an interval holding 0
    assert by.at["scan", "prior"] == pytest.approx(0.75) and by.at["scan", "diff"] == pytest.approx(0.024)
    assert by.at["scan", "diff_ci95"] == "[0.011, 0.037]" and by.at["scan", "prior_sigma"] == pytest.approx(0.12)
    assert by.at[CHANCE_ROW, "beats"] is None
    assert any("beat their matched prior: SCAN;" in n and "below it: Grad-CAM" in n for n in t.notes)
    assert any("no centre prior map is as concentrated as the maps of LRP (0.16: sigma clamped at 0.12, a prior "
               "more concentrated, 0.2)" in n for n in t.notes)
    assert any("top 14% of pixels" in n for n in t.notes)
    md = markdown(t)
    header = next(line for line in md.splitlines() if line.startswith("| backbone"))
    assert [h.strip() for h in header.strip("|").split("|")] == list(LOCALISATION_MD_COLUMNS)
    assert max(len(line) for line in md.splitlines() if line.startswith("|")) <= 130
    assert "prior_sigma" not in md                                 # the CSV's extra columns


def test_report_table_of_results_without_a_matched_prior_leaves_its_cells_empty():
    t = localisation_table(_results(with_prior=False))
    assert t.df["prior"].isna().all() and t.df["beats"].isna().all()
    assert not any("beat their matched prior" in n for n in t.notes)



def test_without_boxes_the_evaluate_json_gains_nothing(tmp_path):
    """The boxes stage's header-only file: no `localisation` object, so no matched prior either (the evaluate stage
    adds the key only for a non-None object: its JSON is as before)."""
    from scanbench.boxes import CHECKED_COLUMNS, load_checked_boxes, write_checked_boxes
    from scanbench.maps import box_localisation

    write_checked_boxes(pd.DataFrame(columns=CHECKED_COLUMNS), tmp_path / "boxes.csv")
    boxes = load_checked_boxes(tmp_path / "boxes.csv")
    maps = np.repeat(centred_gaussian(32, 32, 0.2).astype(np.float16)[None], 3, 0)
    assert box_localisation(boxes, ["a.png", "b.png", "c.png"], np.arange(3), maps, 32, 50, 0) is None


def test_the_verdict_needs_the_interval_clear_of_the_tie_zone():
    assert beats_prior(BEATS_MARGIN * 1.5, 0.2) == "yes" and beats_prior(-0.2, -BEATS_MARGIN * 1.5) == "below"
    assert beats_prior(BEATS_MARGIN / 2, 0.2) == "no" and beats_prior(-0.2, 0.0) == "no"
    assert beats_prior(float("nan"), 0.1) is None
