"""reports/claims.md: the paper's claims that one run can test, each with a verdict from a stated rule, and the
verdicts as numbers for summary.json (`claims.<claim>.<backbone>[.<method>]`: 1 supported, 0 inconclusive,
-1 contradicted; a claim this run cannot test has no key).

Built from the metric files (build_metrics) and the long results table; it reads no file of its own, so the
report stays a function of the run's results. Timing (Table V) is machine-dependent and written outside DVC
(reports/timing/): its row says so and gets no verdict.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import pandas as pd

from ..config import ABLATION_PARAM, ablation_reference
from .results import CALIBRATION_METHODS, METHOD_LABELS
from .tables import best_baseline, fmt, load_paper

SUPPORTED, INCONCLUSIVE, CONTRADICTED = "supported", "inconclusive", "contradicted"
NOT_IN_RUN = "not in this run"
NOT_TESTED = "not tested here (machine-dependent; see reports/timing/)"
VERDICT_NUMBER = {SUPPORTED: 1, INCONCLUSIVE: 0, CONTRADICTED: -1}
AUC_MARGIN = 2.0         # AUC-D percent points: "≈ 0" means inside ±AUC_MARGIN
ABLATION_TABLE = {"alpha": "VI", "layer": "VII", "p": "VIII", "components": "IX"}
ABLATION_CLAIM = {"alpha": "alpha = 4 is best", "layer": "the paper's layer is best", "p": "P = 95 is best",
                  "components": "full SCAN best"}
PAPER_SETTING = {"VI": ("4", ""), "VII": ("default", "4"), "VIII": ("95", ""), "IX": ("full", "")}  # (setting, alpha)

RULES = f"""Verdict rules (95% intervals; every difference is oriented so that the claim says it is > 0):

- **paired** (AUC-D or grid share on the same images / mosaics, paired bootstrap): *supported* when the interval
  lies above 0, *contradicted* when it lies below 0, *inconclusive* when it contains 0.
- **≈0** (the random map): *supported* when the interval lies inside ±{AUC_MARGIN:g} AUC-D points, *contradicted*
  when it lies wholly outside, *inconclusive* otherwise.
- **pt ≈0**, **pt drop** (Table IV's AUCs; the sanity stage writes them without an interval, so the point value is
  tested): random weights, |AUC-D| ≤ {AUC_MARGIN:g} *supported*, else *contradicted*; random labels, original minus
  random-label AUC-D above +{AUC_MARGIN:g} *supported*, below -{AUC_MARGIN:g} *contradicted*, else *inconclusive*.
- **maps** (Spearman similarity to the trained model's map; unpaired intervals): *supported* (the maps collapse)
  when the interval after randomising every weight does not reach above the upper end of the other-image interval
  (another image's map, trained model); *contradicted* when it lies wholly above it; else *inconclusive*.
- **vs ref** ("the paper's setting is best", Tables VI-IX, each row minus the paper's setting, paired):
  *contradicted* when any row beats it with an interval above 0; *supported* when every other row's interval
  lies below 0; else *inconclusive*.
- A claim whose results this run lacks reads *{NOT_IN_RUN}*; timing (Table V) reads
  *{NOT_TESTED}*."""


@dataclass(frozen=True)
class Claim:
    key: tuple[str, ...]   # summary.json path under `claims`: (claim, backbone[, method])
    claim: str
    paper: str
    ours: str
    test: str
    verdict: str
    method: str = ""       # the method (or ablation setting) the row is about, shown in its own column


# ------------------------------------------------------------------------------------------------ the rules

def _ok(ci: Any) -> bool:
    return ci is not None and len(ci) == 2 and all(v is not None and not math.isnan(v) for v in ci)


def verdict_positive(ci: Any) -> str:
    """The claimed difference is > 0: interval above 0 supported, below 0 contradicted, else inconclusive."""
    if not _ok(ci):
        return NOT_IN_RUN
    lo, hi = ci
    return SUPPORTED if lo > 0 else CONTRADICTED if hi < 0 else INCONCLUSIVE


def verdict_near_zero(ci: Any, margin: float = AUC_MARGIN) -> str:
    """The claim is ≈ 0: interval inside ±margin supported, wholly outside contradicted, else inconclusive."""
    if not _ok(ci):
        return NOT_IN_RUN
    lo, hi = ci
    if -margin <= lo and hi <= margin:
        return SUPPORTED
    return CONTRADICTED if lo > margin or hi < -margin else INCONCLUSIVE


def verdict_point_near_zero(value: Any, margin: float = AUC_MARGIN) -> str:
    if value is None or math.isnan(value):
        return NOT_IN_RUN
    return SUPPORTED if abs(value) <= margin else CONTRADICTED


def verdict_point_positive(value: Any, margin: float = AUC_MARGIN) -> str:
    if value is None or math.isnan(value):
        return NOT_IN_RUN
    return SUPPORTED if value > margin else CONTRADICTED if value < -margin else INCONCLUSIVE


def verdict_collapse(randomised_ci: Any, other_ci: Any) -> str:
    """Map-level sanity: the randomised model's maps are no more like the trained model's than another image's."""
    if not (_ok(randomised_ci) and _ok(other_ci)):
        return NOT_IN_RUN
    if randomised_ci[0] > other_ci[1]:
        return CONTRADICTED
    return SUPPORTED if randomised_ci[1] <= other_ci[1] else INCONCLUSIVE


def verdict_reference_best(differences: Mapping[str, Any]) -> str:
    """Each other setting's (row - reference) interval: any above 0 contradicts, all below 0 supports."""
    cis = [ci for ci in differences.values() if _ok(ci)]
    if not cis or len(cis) != len(differences):
        return NOT_IN_RUN
    if any(lo > 0 for lo, _ in cis):
        return CONTRADICTED
    return SUPPORTED if all(hi < 0 for _, hi in cis) else INCONCLUSIVE


# --------------------------------------------------------------------------------------------- formatting

def _negated(ci: Any) -> list[float] | None:
    """The interval of -(x) (method - SCAN -> SCAN - method)."""
    return [-ci[1], -ci[0]] if _ok(ci) else None


def _ours(value: Any, ci: Any = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return fmt(value) + (f" [{fmt(ci[0])}, {fmt(ci[1])}]" if _ok(ci) else "")


def _similarity(value: float, ci: Any) -> str:
    """A similarity in [-1, 1] with its interval, two decimals."""
    return f"{value:.2f}" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if _ok(ci) else "")


def _label(m: str | None) -> str:
    return METHOD_LABELS.get(m, m) if m else "n/a"


def _paper_rows(table: str, model: str | None = None, dataset: str = "ImageNet") -> pd.DataFrame:
    v = load_paper().values
    sel = v[(v["table"] == table) & (v["metric"] == "auc_d") & (v["dataset"] == dataset)]
    return sel if model is None else sel[sel["model"] == model]


def _paper_auc(table: str, model: str, method: str, setting: str = "") -> float | None:
    sel = _paper_rows(table, model)
    sel = sel[(sel["method"] == method) & (sel["setting"] == setting)]
    return float(sel["value"].iloc[0]) if len(sel) else None


def _paper_scan_vs_best(table: str, model: str, cam_only: bool = False) -> str:
    """The paper's SCAN minus its best baseline (Table I / II, ImageNet), e.g. "+1.02 vs LayerCAM"."""
    sel = _paper_rows(table, model)
    sel = sel[sel["setting"] == ""]
    auc = dict(zip(sel["method"], sel["value"]))
    if cam_only:
        auc = {m: v for m, v in auc.items() if m == "scan" or "cam" in m}
    best = best_baseline(auc)
    if best is None or "scan" not in auc:
        return "n/a"
    return f"{auc['scan'] - auc[best]:+.2f} vs {_label(best)}"


def _paper_model(family: str) -> str:
    return load_paper().model_for_family.get(family, "")


# ------------------------------------------------------------------------------------------------- claims

def cam_methods(methods: Sequence[str]) -> list[str]:
    """The CAM-family baselines (Grad-CAM and its variants) among `methods`."""
    return [m for m in methods if "cam" in m and m != "scan" and m not in CALIBRATION_METHODS]


def _vs_scan_claims(explanations: Mapping[str, Any]) -> list[Claim]:
    rows = []
    for b, rec in explanations.items():
        fam, ms = rec.get("family"), rec.get("methods", {})
        auc = {m: v.get("auc_d") for m, v in ms.items()}
        if fam == "cnn":
            key, text, table, pool = "scan_vs_best_cam", "SCAN ≥ best CAM (T. II)", "II", cam_methods(list(auc))
        else:
            key, text, table, pool = "scan_vs_best_baseline", "SCAN best (ViT, T. I)", "I", list(auc)
        best = best_baseline({m: auc[m] for m in pool})
        paper = _paper_scan_vs_best(table, _paper_model(fam), cam_only=fam == "cnn")
        if best is None or "scan" not in ms:
            rows.append(Claim((key, b), text, paper, "n/a", "paired", NOT_IN_RUN))
            continue
        ci = _negated(ms[best].get("auc_d_minus_scan_ci95"))
        diff = None if auc.get("scan") is None or auc.get(best) is None else auc["scan"] - auc[best]
        rows.append(Claim((key, b), text, paper, _ours(diff, ci), "paired",
                          verdict_positive(ci), best))
    return rows


def _random_claims(results: pd.DataFrame, calibration: Mapping[str, Any]) -> list[Claim]:
    paper = load_paper().values
    text = paper[(paper["table"] == "text") & (paper["method"] == "random")].set_index("metric")["value"]
    pfig = f"{text['neg_auc'] - text['pos_auc']:+.2f} (Sec. IV.A)" if {"neg_auc", "pos_auc"} <= set(text.index) \
        else "≈ 0 (Sec. IV.A)"
    sel = results[(results["part"] == "evaluate") & (results["method"] == "random")
                  & (results["variant"] == "calibration") & (results["metric"] == "auc_d") & results["x"].isna()]
    ci = {b: [lo, hi] for b, lo, hi in zip(sel["backbone"], sel["ci_lo"], sel["ci_hi"])}
    return [Claim(("random_near_zero", b), "random map AUC-D ≈ 0", pfig, _ours(rec.get("auc_d"), ci.get(b)),
                  "≈0", verdict_near_zero(ci.get(b)))
            for b, rec in calibration.items()]


def _sanity_claims(sanity: Mapping[str, Any]) -> list[Claim]:
    rows = []
    for b, per_method in sanity.items():
        for m, s in per_method.items():
            w, o, r = s.get("random_weights"), s.get("original"), s.get("random_label")
            pw, po, pr = (_paper_auc("IV", "ResNet50V2", m, x) for x in ("random_weights", "original",
                                                                          "random_label"))
            rows.append(Claim(("sanity_random_weights", b, m), "random weights: AUC-D ≈ 0",
                              f"{fmt(pw)} (T. IV)" if pw is not None else "n/a",
                              _ours(w), "pt ≈0", verdict_point_near_zero(w), m))
            drop = None if o is None or r is None else o - r
            rows.append(Claim(("sanity_random_label", b, m), "random labels lower AUC-D",
                              f"{po - pr:+.2f} (T. IV)" if po is not None and pr is not None else "n/a",
                              _ours(drop), "pt drop", verdict_point_positive(drop), m))
    return rows


def _sanity_map_claims(results: pd.DataFrame) -> list[Claim]:
    sel = results[(results["part"] == "sanity_maps") & (results["metric"] == "spearman") & results["x"].isna()]
    rows = []
    for (b, m), g in sel.groupby(["backbone", "method"], sort=False):
        cell = {(s, v): (val, [lo, hi]) for s, v, val, lo, hi in
                zip(g["setting"], g["variant"], g["value"], g["ci_lo"], g["ci_hi"])}
        rnd, other = cell.get(("1", "cascading")), cell.get(("", "other_image"))
        if rnd is None or other is None:
            verdict, ours = NOT_IN_RUN, "n/a"
        else:
            verdict, ours = verdict_collapse(rnd[1], other[1]), f"{_similarity(*rnd)} vs {_similarity(*other)}"
        rows.append(Claim(("sanity_maps_collapse", b, m), "map collapses", "-", ours, "maps", verdict, m))
    return rows


def _paper_ablation(table: str, family: str) -> str:
    """The paper's best other row minus its own setting (Tables VI-IX, ImageNet), e.g. "-0.65 (T. VII)"."""
    rows = _paper_rows(table, _paper_model(family))
    if not len(rows):   # Table IX: ResNet50V2 only
        rows = _paper_rows(table, "ResNet50V2")
    setting, alpha = PAPER_SETTING[table]
    is_ref = (rows["setting"] == setting) & rows["alpha"].isin(["", alpha])
    if not is_ref.any() or is_ref.all():
        return f"T. {table}"
    others = rows[~is_ref].sort_values("value", ascending=False)
    return f"{others['value'].iloc[0] - rows[is_ref]['value'].iloc[0]:+.2f} (T. {table})"


def _ablation_claims(metrics: Mapping[str, Any], params: Mapping[str, Any], families: Mapping[str, str]
                     ) -> list[Claim]:
    rows = []
    for kind in ABLATION_PARAM:
        per_backbone = metrics.get(f"ablation_{kind}") or {}
        table, text = ABLATION_TABLE[kind], ABLATION_CLAIM[kind]
        if not per_backbone:
            rows.append(Claim((f"ablation_{kind}",), text, f"T. {table}", "n/a", "vs ref", NOT_IN_RUN))
            continue
        ref = ablation_reference(dict(params), kind)
        for b, settings in per_backbone.items():
            others = {s: v.get("auc_d_minus_ref_ci95") for s, v in settings.items() if s != ref}
            best = max(others, key=lambda s: _value(settings[s].get("auc_d_minus_ref")), default=None)
            ours = "n/a" if best is None else _ours(settings[best].get("auc_d_minus_ref"), others[best])
            verdict = verdict_reference_best(others) if ref in settings and others else NOT_IN_RUN
            rows.append(Claim((f"ablation_{kind}", b), text, _paper_ablation(table, families.get(b, "")), ours,
                              "vs ref", verdict, best or ""))
    return rows


def _value(v: Any) -> float:
    return -math.inf if v is None or math.isnan(v) else float(v)


def _centre_claims(explanations: Mapping[str, Any]) -> list[Claim]:
    rows = []
    for b, rec in explanations.items():
        for m, v in rec.get("methods", {}).items():
            if m in CALIBRATION_METHODS:
                continue
            ci = v.get("auc_d_minus_centre_ci95")
            centre = rec["methods"].get("centre", {}).get("auc_d")
            diff = None if v.get("auc_d") is None or centre is None else v["auc_d"] - centre
            rows.append(Claim(("beats_centre", b, m), "beats the centre prior", "-", _ours(diff, ci), "paired",
                              verdict_positive(ci), m))
    return rows


def _grid_claims(grid: Mapping[str, Any]) -> list[Claim]:
    if not grid:
        return [Claim(("grid",), "grid: SCAN share > best, centre", "-", "n/a", "paired", NOT_IN_RUN)]
    rows = []
    for b, rec in grid.items():
        scan = rec.get("methods", {}).get("scan", {})
        best = rec.get("best_baseline")
        for ref, name, method in (("best", "best", best), ("centre", "centre", "centre")):
            ci = scan.get(f"share_minus_{ref}_ci95")
            rows.append(Claim((f"grid_scan_vs_{ref}", b), f"grid: SCAN share > {name}", "-",
                              _ours(scan.get(f"share_minus_{ref}"), ci), "paired", verdict_positive(ci), method or ""))
    return rows


def build_claims(results: pd.DataFrame, metrics: Mapping[str, Any], params: Mapping[str, Any],
                 families: Mapping[str, str]) -> list[Claim]:
    """Every claim row, paper claims first, then what the benchmark adds."""
    expl = metrics.get("explanations") or {}
    rows = _vs_scan_claims(expl) if expl else [
        Claim(("scan_vs_best_baseline",), "SCAN ≥ best baseline", "T. I, II", "n/a", "paired", NOT_IN_RUN)]
    cal = metrics.get("calibration") or {}
    rows += _random_claims(results, cal) if cal else [
        Claim(("random_near_zero",), "random map AUC-D ≈ 0", "Sec. IV.A", "n/a", "≈0", NOT_IN_RUN)]
    sanity = metrics.get("sanity") or {}
    rows += _sanity_claims(sanity) if sanity else [
        Claim(("sanity_random_weights",), "random weights: AUC-D ≈ 0", "T. IV", "n/a", "pt ≈0", NOT_IN_RUN)]
    rows.append(Claim(("timing",), "SCAN ~2× Grad-CAM, ≪ LIME, RISE", "T. V", "n/a", "-", NOT_TESTED))
    rows += _ablation_claims(metrics, params, families)
    rows += _centre_claims(expl)
    rows += _grid_claims(metrics.get("grid") or {})
    rows += _sanity_map_claims(results) if metrics.get("sanity_maps") else [
        Claim(("sanity_maps_collapse",), "map collapses", "-", "n/a", "maps", NOT_IN_RUN)]
    return rows


def claims_summary(claims: Sequence[Claim]) -> dict[str, Any]:
    """summary.json's `claims`: nested by name, the verdict as a number; untested claims have no key."""
    out: dict[str, Any] = {}
    for c in claims:
        if c.verdict not in VERDICT_NUMBER or len(c.key) < 2:
            continue
        node = out
        for k in c.key[:-1]:
            node = node.setdefault(k, {})
        node[c.key[-1]] = VERDICT_NUMBER[c.verdict]
    return out


def render_claims(claims: Sequence[Claim], profile: str) -> str:
    lines = [f"# The paper's claims, tested (profile: `{profile}`)", "",
             "Generated by the `report` stage from this run's results. The verdicts are also in "
             "`metrics/summary.json`\nunder `claims.<claim>.<backbone>[.<method>]` (1 supported, 0 inconclusive, "
             "-1 contradicted).", "", RULES, "",
             "| # | claim | backbone | method | paper | ours [95% interval] | test | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for i, c in enumerate(claims, 1):
        backbone = c.key[1] if len(c.key) > 1 else "-"
        method = METHOD_LABELS.get(c.method, c.method) or "-"   # a method's label, or an ablation setting
        lines.append(f"| {i} | {c.claim} | {backbone} | {method} | {c.paper} | {c.ours} | {c.test} | {c.verdict} |")
    counts = {v: sum(c.verdict == v for c in claims) for v in (SUPPORTED, INCONCLUSIVE, CONTRADICTED)}
    lines += ["", "Counts: " + ", ".join(f"{n} {v}" for v, n in counts.items()) + ".", "", "Notes:", "", *NOTES, ""]
    return "\n".join(lines)


NOTES = [
    "- AUC-D in percent points (fair variant). `paper`: the paper's ImageNet figure for the model standing for the "
    "family\n  (ResNet50V2, ViT-B/16; Tables IV and IX: ResNet50V2 only), as the same difference as `ours`.",
    "- SCAN ≥ best CAM / best on the ViT: SCAN minus the baseline of highest AUC-D in this run (`method`; CAM "
    "family: Grad-CAM\n  and its variants; calibration rows excluded), the paired interval being "
    "`auc_d_minus_scan_ci95` negated.",
    "- Table IV: the paper's random weights take SCAN and LayerCAM to ≈ 0 (0.01, -0.01), random labels lower them "
    "without\n  collapse (by 5.61, 3.69); `paper` gives the AUC-D under random weights and the drop under random "
    "labels.",
    "- Map collapse (not in the paper): `ours` is the Spearman similarity after randomising every weight vs "
    "another image's map.",
    "- Ablations: `method` is the best row other than the paper's setting; `ours` that row minus the paper's "
    "setting; `paper`\n  the same difference in the paper's table.",
    "- Beats the centre prior / grid (not in the paper): the method (grid: SCAN) minus the centre prior or the best "
    "baseline.",
    "- A smoke profile scores a few images: its intervals are wide and most verdicts inconclusive by design.",
]
