"""The paper's tables beside ours: each described as data (`TableSpec`), all rendered by `build_table`.

Columns: the row keys; `paper_row` / `paper_ref` (which printed row, which model and table the paper's values
come from); per metric our value, its interval (`<metric>_ci95`: 95% bootstrap over images; Table V:
`_iqr`) and the paper's (`paper_<metric>`, left out where the paper prints none); then our extra columns.
Paper rows that pair with none of ours follow as reference rows (backbone "paper"), so every number of the
paper's table is visible. Table V (time per image) is rendered by the timing stage (`write_timing_table`).
The paper's values (paper_values.yaml) are held in the long form of our results (`load_paper`).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import pandas as pd
import yaml

from ..config import ablation_reference, configured_data_root, setting_name
from ..errors import ScanbenchError
from ..io import write_text
from ..per_image_metrics import PER_IMAGE_NAMES
from .results import (
    CALIBRATION_METHODS,
    METHOD_LABELS,
    families_of,
    long_table,
    method_sort_key,
    setting_sort_key,
    tidy,
)

ROMAN = ("I", "II", "III", "IV", "V", "VI", "VII", "VIII", "IX", "X", "XI")
AUCS = ("auc_d", "neg_auc", "pos_auc")   # the paper's column order
PAIRED = ("auc_d_minus_scan", "auc_d_minus_centre")   # paired differences (report/paired.py); the paper has none
PAPER_VALUES_PATH = Path(__file__).with_name("paper_values.yaml")
PAPER_METRICS = ("auc_d", "neg_auc", "pos_auc", "drop", "inc", "win", "ms_per_image")


@dataclass(frozen=True)
class Paper:
    values: pd.DataFrame   # record, table, dataset, model, method, setting, alpha, paper_row, metric, value
    model_for_family: dict[str, str]
    setting_aliases: dict[str, dict[str, dict[str, str]]]   # table -> family -> our setting -> paper setting


@lru_cache(maxsize=4)
def load_paper(path: str | Path = PAPER_VALUES_PATH) -> Paper:
    with open(path) as fh:
        data = yaml.safe_load(fh)
    records = pd.DataFrame(data["records"]).assign(record=lambda d: range(len(d)))
    for c in ("setting", "alpha"):     # as our settings are named: 95 -> "95", none -> ""
        records[c] = [setting_name(v) if v is not None and v == v else "" for v in records[c]]
    ids = ["record", "table", "dataset", "model", "method", "setting", "alpha", "paper_row"]
    values = records.melt(id_vars=ids, value_vars=[m for m in PAPER_METRICS if m in records], var_name="metric")
    values = values.dropna(subset=["value"]).astype({"value": float}).sort_values(["record", "metric"])
    return Paper(values.reset_index(drop=True), dict(data["paper_model_for_family"]), data["setting_aliases"])


def paper_dataset_for(params: Mapping[str, Any]) -> str:
    """The paper dataset our data stands in for: CUB or Food-101 when the data root says so, else ImageNet."""
    root = configured_data_root(dict(params)).lower()
    if "cub" in root or "bird" in root:
        return "CUB-200-2011"
    if "food" in root:
        return "Food-101"
    return "ImageNet"


FLOAT_NOISE = 1e-9


def fmt(v: Any) -> str:
    """The one number format of the tables and the README: counts as integers, other numbers with two
    decimals, or three significant digits below 1 (0.141, 0.35, -0.01: as printed), and 0.00 within float noise of
    0; a missing value is empty."""
    if isinstance(v, str):
        return v
    if v is None or pd.isna(v):
        return ""
    if isinstance(v, int) or (hasattr(v, "dtype") and v.dtype.kind in "iu"):
        return str(int(v))
    if abs(v) < FLOAT_NOISE:   # a mean of values that cancel (7.1e-15 for 0): zero, as the metric files round it
        return "0.00"
    return f"{v:.2f}" if abs(v) >= 1 else f"{v:.3g}"


@dataclass
class Table:
    number: str
    title: str
    df: pd.DataFrame          # raw values; `fmt` renders them
    notes: list[str] = field(default_factory=list)
    name: str | None = None   # the file stem of a table that is not one of the paper's (else table<n>)
    # the columns the Markdown shows (None: all); a shown column's hidden `<c>_ci95` joins its cell, "v [lo, hi]";
    # the CSV keeps every column
    markdown_columns: tuple[str, ...] | None = None
    markdown_decimals: int | None = None   # the Markdown's numbers (values, intervals) with this many decimals

    @property
    def stem(self) -> str:
        return self.name or f"table{ROMAN.index(self.number) + 1}"


@dataclass(frozen=True)
class TableSpec:
    number: str
    title: str                               # may use {dataset} (the paper dataset ours stands in for), {alpha}
    part: str                                # our rows: this part of the results table
    index: tuple[str, ...]                   # row keys shown after the backbone
    metrics: tuple[str, ...]                 # paired with the paper's column of the same name
    paper: tuple[str, ...]                   # paper tables our rows pair with
    family: str | None = None                # only backbones of this family
    extra: tuple[str, ...] = ()              # our columns that the paper has no counterpart for
    pair_on: tuple[str, ...] = ("method", "setting")
    reference: tuple[str, ...] = ()          # paper tables listed as reference rows (default: `paper`)
    select: Callable[[pd.DataFrame], pd.DataFrame] | None = None
    interval: str = "ci95"
    notes: tuple[str, ...] = ()
    differs: str | None = None               # a paired metric: a `differs` column says whether its interval
                                             # excludes 0 (`ref` on the reference row itself)
    beats: tuple[str, ...] = ()              # controls (methods): a `beats` column says, per control r, whether
                                             # the paired interval of `auc_d_minus_<r>` lies above 0
    markdown: tuple[str, ...] = ()           # the Markdown's columns (Table.markdown_columns); () for all
    markdown_decimals: int | None = None     # ... and its numbers' decimals (Table.markdown_decimals)


def best_baseline(auc_d: Mapping[str, float | None]) -> str | None:
    """The method other than SCAN and the calibration row with the highest AUC-D (None if none)."""
    cands = {m: v for m, v in auc_d.items()
             if m != "scan" and m not in CALIBRATION_METHODS and v is not None and not math.isnan(v)}
    return max(cands, key=cands.get) if cands else None


def _scan_best_lime(ours: pd.DataFrame) -> pd.DataFrame:
    """Table III's rows per backbone: SCAN, the best baseline, LIME."""
    roles = {}
    for b, g in ours.groupby("backbone"):
        roles.update({(b, "scan"): "SCAN", (b, "lime"): "LIME",
                      (b, best_baseline(dict(zip(g["method"], g["auc_d"])))): "best baseline"})
    role = pd.Series([roles.get(k, "") for k in zip(ours["backbone"], ours["method"])], index=ours.index)
    order = role.map({"SCAN": 0, "best baseline": 1, "LIME": 2})
    return ours.assign(role=role, _order=order)[role != ""].sort_values(["backbone", "_order"], kind="stable")


PAIRED_NOTE = (
    "`auc_d_minus_scan` / `auc_d_minus_centre` / `auc_d_minus_random` (CSV) = the method's AUC-D minus SCAN's / "
    "the centre prior's / the random map's on the same images, with its paired-bootstrap 95% interval (each "
    "resample draws the images once for both methods); an interval that excludes 0 separates the two methods. The "
    "centre prior is one centred Gaussian map for every image (explain.centre.sigma): a method that does not beat "
    "it has not shown that it looks at the image.")
BEATS_NOTE = ("`beats` = whether the method's AUC-D beats the centre prior / the random map: yes (paired interval "
              "above 0), worse (below 0) or n.s. (it holds 0); `-` for the control itself or where the run has no "
              "such control.")
EXPLANATION_NOTES = (
    "AUCs use the fair resolution (map average-pooled to the backbone grid, then upsampled); `auc_d_full` is "
    "AUC-D at full resolution. `_ci95` = 95% bootstrap interval over images.", PAIRED_NOTE, BEATS_NOTE,
    "Win% = share of images on which the method's Drop% is the lowest among the methods of this backbone (ties "
    "count for each; the calibration rows, random map and centre prior, are scored against the others but never "
    "take a win away).")
EXPLANATION_COLUMNS = dict(part="evaluate", index=("method",),
                           metrics=("auc_d", *PAIRED, "auc_d_minus_random", "neg_auc", "pos_auc", *PER_IMAGE_NAMES,
                                    "win"),
                           extra=("auc_d_full", "n_images"), pair_on=("method",), beats=("centre", "random"),
                           markdown=("backbone", "method", "auc_d", "paper_auc_d", "auc_d_minus_scan", "beats"),
                           markdown_decimals=1)
ABLATION_PAIRED = "auc_d_minus_ref"   # report/paired.py: a setting's AUC-D minus its kind's reference setting's
ABLATION_COLUMNS = dict(index=("setting",), metrics=("auc_d", ABLATION_PAIRED, "neg_auc", "pos_auc"),
                        extra=("auc_d_full", "n_images", "val_confidence_area"), differs=ABLATION_PAIRED,
                        markdown=("backbone", "setting", "auc_d", "paper_auc_d", ABLATION_PAIRED, "differs"),
                        markdown_decimals=1)
ABLATION_NOTE = (
    "Every setting is scored on the evaluation images of Tables I/II (explain.n_images). `auc_d_minus_ref` = "
    "the setting's AUC-D minus the reference setting's (`differs` = ref: alpha = ablation.base_alpha, the default "
    "layer, P = the top-level p, full SCAN) on the same images, with its paired-bootstrap 95% interval; "
    "`differs` = yes where that interval excludes 0 (the two settings are told apart), no where it does not. "
    "The CSV adds AUC-D's own 95% bootstrap interval, Neg / Pos AUC beside the paper's, the paper row and "
    "model each row pairs with (for `paper` rows: the model they were measured on), the full-resolution AUC-D and "
    "the image count.")

TABLES = (
    TableSpec("I", "Table I: explanation methods on the transformer backbone(s); paper: ViT-B/16 on {dataset} "
              "(its other datasets listed below as reference rows)", family="vit", paper=("I", "text"),
              reference=("I",), **EXPLANATION_COLUMNS, notes=EXPLANATION_NOTES + (
                  "Paper AUC columns of the first six ImageNet rows are quoted by the paper from Chefer et al. "
                  "[15]; the random row's paper values are from the paper's Sec. IV.A (ten random maps per image).",
                  "LRP and partial LRP follow Chefer et al.'s rules (alpha-beta, alpha 1) through the timm blocks "
                  "and stop at the patch tokens: their maps live on the token grid (docs/DECISIONS.md).")),
    TableSpec("II", "Table II: explanation methods on the CNN backbone(s); paper: ResNet50V2 on ImageNet",
              family="cnn", paper=("II",), **EXPLANATION_COLUMNS, notes=EXPLANATION_NOTES + (
                  "The paper's Table II reports AUCs only; Drop%, Inc%, Win% and the full-resolution AUC-D are "
                  "ours.",)),
    TableSpec("III", "Table III: SCAN vs the best baseline per backbone; our rows stand beside the paper's same "
              "method on its reference model for the family (ViT-B/16 / ResNet50V2), and the paper's Table III "
              "models follow as reference rows", part="evaluate", index=("method", "role"),
              metrics=(*AUCS, *PAIRED), paper=("I", "II"), pair_on=("method",), reference=("III",),
              select=_scan_best_lime, markdown_decimals=1,
              markdown=("backbone", "method", "role", "auc_d", "paper_auc_d", "auc_d_minus_scan"),
              notes=("The best baseline is the method other than SCAN and the calibration rows (random map, "
                     "centre prior) with the highest AUC-D on that backbone; its `auc_d_minus_scan` is the "
                     "paired comparison with SCAN.", PAIRED_NOTE)),
    TableSpec("IV", "Table IV: sanity checks (model-parameter and label randomisation); paper: ResNet50V2, "
              "ImageNet", part="sanity", index=("method", "setting"), metrics=AUCS, paper=("IV",),
              markdown=("backbone", "method", "setting", "auc_d", "paper_auc_d", "neg_auc", "pos_auc"),
              markdown_decimals=1,
              notes=("SCAN under random weights applies the decoder trained on the original model to the "
                     "randomised model's features and gradients (it is not retrained).",
                     "Random label: a uniformly random class other than the predicted one is explained.")),
    TableSpec("VI", "Table VI: ablation on alpha (P = 95); paper: ViT-B/16 6th block, ResNet50V2 last conv layer",
              part="ablation_alpha", paper=("VI",), **ABLATION_COLUMNS,
              notes=(ABLATION_NOTE, "Each alpha trains its own decoder (ablation.epochs, ablation.n_train "
                     "images), so the alpha = 4 row may differ from Tables I/II.")),
    TableSpec("VII", "Table VII: ablation on the SCAN layer (alpha = {alpha}, P = 95); paper: ViT-B/16 "
              "3rd/6th/9th block, ResNet50V2 last/14x14/28x28 conv", part="ablation_layer", paper=("VII",),
              pair_on=("method", "setting", "alpha"), **ABLATION_COLUMNS,
              notes=(ABLATION_NOTE, "Layers pair with the paper's by role (at the alpha they ran with): default = "
                     "the paper's choice; ViT alt1 = shallower (paper 3rd block), alt2 = deeper (paper 9th); CNN "
                     "alt1 / alt2 = one / two steps shallower (paper last 14x14 / 28x28 conv), except "
                     "EfficientNet-Lite0: its SCAN layer is blocks.5 (7x7, docs/DECISIONS.md), alt1 the deeper "
                     "conv_head (7x7, no paper row), alt2 blocks.4 (14x14, paired with the paper's last 14x14 conv).",
                     "The paper's alpha = 8 columns have no counterpart here (listed as reference rows).")),
    TableSpec("VIII", "Table VIII: ablation on the inference percentile P (alpha = 4); paper: ViT-B/16 6th block, "
              "ResNet50V2 last conv layer", part="ablation_p", paper=("VIII",), **ABLATION_COLUMNS,
              notes=(ABLATION_NOTE, "The main decoder is reused, on every backbone; only the inference-time "
                     "percentile P changes, so the reference row is Table I/II's SCAN row.")),
    TableSpec("IX", "Table IX: ablation of SCAN's components; paper: ResNet50V2, ImageNet",
              part="ablation_components", paper=("IX",), **ABLATION_COLUMNS,
              notes=(ABLATION_NOTE, "full = SCAN as trained for the other ablations (ablation.base_alpha); "
                     "alpha1 = alpha 1 (no positive/negative distinction); no_mask = the decoder sees the "
                     "unmasked features F (train and inference); no_blur = unblurred target; sigmoid = sigmoid "
                     "instead of the stretched sine confidence. The paper ran this on ResNet50V2 only.",)),
    TableSpec("X", "Table X (ours, no paper counterpart): SCAN against the number of images its decoder trains on "
              "(alpha, P = 95, the same steps for every size)", part="scaling", index=("setting",),
              metrics=("auc_d",), paper=(),
              extra=("recon_skill", "conf_area", "conf_image_std", "epochs", "steps", "n_images"),
              markdown=("backbone", "setting", "auc_d", "recon_skill", "conf_area", "epochs", "steps"),
              notes=("setting = training images (a nested seeded subset of the training split; the largest is all "
                     "of it). recon_skill = 1 - held-out reconstruction MSE / the mean training image's MSE; "
                     "conf_area = mean held-out confidence at P = 95; AUC-D on the evaluation images.",
                     "The main decoders train longer (scan.steps): see Tables I/II and scan_training.json.")),
)
TIMING_TABLE = TableSpec(
    "V", "Table V: explanation time per image (ms; batch 1 median and IQR, batched) and the ratio to Grad-CAM; "
    "paper: ResNet50V2", part="timing", index=("method",), metrics=("ms_per_image",), paper=("V",),
    extra=("ms_per_image_batched", "ratio_to_gradcam", "n_images"), pair_on=("method",), interval="iqr",
    notes=("Timings are machine-dependent: the paper's are on an Nvidia A5000 GPU (64 samples); ours on the "
           "device named above. Compare ratios, not milliseconds.",),
    markdown=("backbone", "method", "ms_per_image", "paper_ms_per_image", "ms_per_image_batched", "ratio_to_gradcam"))


def ablation_alpha(params: Mapping[str, Any]) -> float:
    """The alpha of the layer / components / P ablations: ablation.base_alpha, else the top-level alpha, else 4."""
    return float(params.get("ablation", {}).get("base_alpha", params.get("alpha", 4)))


def _ours(results: pd.DataFrame, spec: TableSpec) -> tuple[pd.DataFrame, list[str]]:
    """One row per (backbone, method, setting): a column per metric (a variant other than the main "fair"
    one suffixes its name: auc_d_full), and `<metric>_<interval>` where the number has one."""
    sel = results[(results["part"] == spec.part) & results["x"].isna()]
    if spec.family:
        sel = sel[sel["family"] == spec.family]
    sel = sel.assign(column=sel["metric"].where(sel["variant"].isin(["", "fair"]),
                                                sel["metric"] + "_" + sel["variant"]))
    keys = ["backbone", "family", "method", "setting"]
    wide = sel.pivot(index=keys, columns="column", values="value")
    has_ci = sel.dropna(subset=["ci_lo"])
    lo, hi = (has_ci.pivot(index=keys, columns="column", values=c) for c in ("ci_lo", "ci_hi"))
    for c in lo.columns:
        wide[f"{c}_{spec.interval}"] = [None if pd.isna(a) else f"[{fmt(a)}, {fmt(b)}]"
                                        for a, b in zip(lo[c].reindex(wide.index), hi[c].reindex(wide.index))]
    if spec.beats:
        def interval(k: tuple, ref: str) -> tuple[float, float] | None:
            c = f"auc_d_minus_{ref}"
            return (lo.at[k, c], hi.at[k, c]) if c in lo.columns and k in lo.index else None
        wide["beats"] = [beats_cell(m, spec.beats, lambda ref, k=k: interval(k, ref))
                         for k, m in zip(wide.index, wide.index.get_level_values("method"))]
    if spec.differs in lo.columns:
        wide["differs"] = [None if pd.isna(a) else excludes_zero(a, b)
                           for a, b in zip(lo[spec.differs].reindex(wide.index), hi[spec.differs].reindex(wide.index))]
    wide = wide.reset_index()
    wide = wide.iloc[sorted(range(len(wide)), key=lambda i: (wide["backbone"].iat[i], method_sort_key(
        wide["method"].iat[i]), setting_sort_key(wide["setting"].iat[i])))].reset_index(drop=True)
    return (spec.select(wide) if spec.select and len(wide) else wide), list(lo.columns)


def beats_mark(lo: Any, hi: Any) -> str:
    """A method minus a control, from its paired interval: "yes" above 0, "worse" below, "n.s." holding 0, ""
    without an interval."""
    if lo is None or hi is None or pd.isna(lo) or pd.isna(hi):
        return ""
    return "yes" if lo > 0 else "worse" if hi < 0 else "n.s."


def beats_cell(method: str, controls: Sequence[str],
               interval: Callable[[str], tuple[float, float] | None]) -> str:
    """A `beats` cell: per control, `beats_mark` of the method minus it (`interval(control)`), "-" for the control
    itself or without an interval; joined by " / "."""
    marks = []
    for ref in controls:
        ci = None if method == ref else interval(ref)
        marks.append((beats_mark(*ci) if ci is not None else "") or "-")
    return " / ".join(marks)


def excludes_zero(lo: float, hi: float) -> str:
    """A paired difference's verdict: "yes" where its interval [lo, hi] excludes 0 (the two are told apart)."""
    return "yes" if lo > 0 or hi < 0 else "no"


def _paper_rows(paper: Paper, tables: Sequence[str], dataset: str | None) -> pd.DataFrame:
    """The paper's records of these tables, one row each: paper_<metric> columns. With a dataset: only its
    records (else ImageNet's, where a table has none of that dataset)."""
    vals = paper.values[paper.values["table"].isin(tables)]
    if dataset:
        has = vals.groupby("table")["dataset"].agg(lambda d: dataset in set(d))
        vals = vals[vals["dataset"] == vals["table"].map(lambda t: dataset if has[t] else "ImageNet")]
    ids = ["record", "table", "dataset", "model", "method", "setting", "alpha", "paper_row"]
    wide = vals.pivot(index=ids, columns="metric", values="value").add_prefix("paper_").reset_index()
    where = wide["table"].map(lambda t: "Sec. IV.A" if t == "text" else f"Table {t}")
    return wide.assign(paper_ref=wide["model"] + ", " + wide["dataset"] + " (" + where + ")")


def build_table(spec: TableSpec, results: pd.DataFrame, params: Mapping[str, Any], paper: Paper | None = None,
                notes: Sequence[str] = ()) -> Table:
    """Our rows of `spec` beside the paper record each pairs with (same model family, method and setting,
    settings translated by paper_values.yaml `setting_aliases`), then the paper's unpaired rows."""
    paper = paper or load_paper()
    dataset, alpha = paper_dataset_for(params), ablation_alpha(params)
    ours, with_interval = _ours(results, spec)
    aliases: dict[str, dict[str, str]] = {}
    for t in spec.paper:
        aliases.update(paper.setting_aliases.get(t, {}))
    ours["_model"] = ours["family"].map(paper.model_for_family)
    ours["_method"] = ours["method"] if "method" in spec.pair_on else ""
    ours["_setting"] = ("" if "setting" not in spec.pair_on else ours["setting"] if not aliases else
                        [aliases.get(b, aliases.get(f, {})).get(s, "?")
                         for b, f, s in zip(ours["backbone"], ours["family"], ours["setting"])])
    ran_at = ours["alpha"] if "alpha" in ours else pd.Series(math.nan, index=ours.index)  # else the base alpha
    ours["_alpha"] = [setting_name(alpha if pd.isna(a) else float(a)) for a in ran_at] if "alpha" in spec.pair_on \
        else ""
    candidates = _paper_rows(paper, spec.paper, dataset)
    right = candidates.rename(columns={"model": "_model", "method": "_method", "setting": "_setting",
                                       "alpha": "_alpha"}).drop(columns=["table", "dataset"])
    if "setting" not in spec.pair_on:
        right["_setting"] = ""
    if "alpha" not in spec.pair_on:
        right["_alpha"] = ""
    paired = ours.merge(right, how="left", on=["_model", "_method", "_setting", "_alpha"])
    if len(paired) != len(ours):
        raise ScanbenchError(f"paper_values.yaml: several records pair with one row of Table {spec.number}")
    reference = _paper_rows(paper, spec.reference or spec.paper, None)
    reference = reference[~reference["record"].isin(paired["record"])]
    reference = reference.assign(backbone="paper", setting=[s + (f" (alpha={a})" if a else "") for s, a in
                                                            zip(reference["setting"], reference["alpha"])])
    df = pd.concat([paired, reference], ignore_index=True)
    if spec.differs and "differs" in df:   # the reference row itself
        kind = spec.part.removeprefix("ablation_")
        df.loc[(df["backbone"] != "paper") & (df["setting"] == ablation_reference(dict(params), kind)),
               "differs"] = "ref"
    columns = ["backbone", *spec.index, "paper_row", "paper_ref"]
    for m in spec.metrics:
        columns += [m] + ([f"{m}_{spec.interval}"] if m in with_interval else [])
        columns += [f"paper_{m}"] if f"paper_{m}" in df and df[f"paper_{m}"].notna().any() else []
        columns += ["differs"] if m == spec.differs and "differs" in df else []
    columns += ["beats"] if spec.beats and "beats" in df else []
    columns += list(spec.extra)
    df = df.reindex(columns=columns)
    for c in df.columns:
        if c.startswith("n_"):   # counts stay counts beside empty cells
            df[c] = df[c].astype("Int64")
    notes = [*notes, *spec.notes] + ([] if len(paired) else ["No results of ours for this table in this run "
                                                              "(see its params): the paper's rows only."])
    return Table(spec.number, spec.title.format(dataset=dataset, alpha=setting_name(alpha)),
                 df.astype(object).where(df.notna(), None), notes,
                 markdown_columns=tuple(c for c in spec.markdown if c in df.columns) or None,
                 markdown_decimals=spec.markdown_decimals)


def build_tables(results: pd.DataFrame, params: Mapping[str, Any], paper: Paper | None = None) -> list[Table]:
    """The paper's tables (the map-similarity sanity table right after Table IV), then the localisation table
    where the run scored boxes (none without boxes)."""
    tables = []
    for spec in TABLES:
        tables.append(build_table(spec, results, params, paper))
        if spec.number == "IV":
            similarity = sanity_similarity_table(results)
            tables += [similarity] if similarity else []
    loc = localisation_table(results)
    return tables + ([loc] if loc else []) + grid_tables(results, params)


SIMILARITY_MEASURES = ("spearman", "ssim", "hog")
SIMILARITY_COLUMNS = ("backbone", "method", "randomisation", "setting", "n_groups", "spearman", "spearman_ci95",
                      "ssim", "ssim_ci95", "hog", "hog_ci95", "n_constant", "n_images")
SIMILARITY_MARKDOWN = ("backbone", "method", "randomisation", "setting", "spearman", "ssim")   # HOG: the CSV
SIMILARITY_MODES = ("cascading", "random_label", "other_image", "independent")


def sanity_similarity_table(results: pd.DataFrame) -> Table | None:
    """Beside Table IV: per backbone and method, the similarity of the trained model's maps to the maps after
    cascading randomisation (per depth; "1" = every weight), label randomisation and independent randomisation
    (per group), with 95% bootstrap intervals; the notes quote each method after full randomisation. None when
    the run has no sanity_maps results."""
    sel = results[(results["part"] == "sanity_maps") & results["x"].isna()]
    if sel.empty:
        return None
    rows = []
    for (b, m, mode, setting), cell in sel.groupby(["backbone", "method", "variant", "setting"], sort=False):
        cell = cell.set_index("metric")
        row: dict[str, Any] = {"backbone": b, "method": m, "randomisation": mode, "setting": setting}
        for k in SIMILARITY_MEASURES:
            row[k] = float(cell.at[k, "value"]) if k in cell.index else None
            lo, hi = (cell.at[k, c] if k in cell.index else math.nan for c in ("ci_lo", "ci_hi"))
            row[f"{k}_ci95"] = None if pd.isna(lo) else f"[{fmt(lo)}, {fmt(hi)}]"
        for k in ("n_groups", "n_constant", "n_images", "share", "position"):
            row[k] = cell.at[k, "value"] if k in cell.index else None
        rows.append(row)
    df = pd.DataFrame(rows)
    order = [(r.backbone, method_sort_key(r.method), SIMILARITY_MODES.index(r.randomisation),
              r.share if r.randomisation == "cascading" else (r.position if r.randomisation == "independent" else 0))
             for r in df.itertuples()]
    df = df.iloc[sorted(range(len(df)), key=lambda i: order[i])].reindex(columns=list(SIMILARITY_COLUMNS))
    for c in ("n_groups", "n_constant", "n_images"):
        df[c] = df[c].astype("Int64")
    notes = []
    full = df[(df["randomisation"] == "cascading") & (df["setting"] == "1")]
    other = df[df["randomisation"] == "other_image"].set_index(["backbone", "method"])
    for b, g in full.groupby("backbone", sort=True):
        def quote(r) -> str:
            ref = f" (another image's map: {fmt(other.at[(b, r.method), 'spearman'])})" \
                if (b, r.method) in other.index else ""
            return (f"{METHOD_LABELS.get(r.method, r.method)} Spearman {fmt(r.spearman)}{ref}, SSIM {fmt(r.ssim)}, "
                    f"HOG {fmt(r.hog)}")
        notes.append(f"{b}, after full randomisation (every weight, Table IV's randomised model): "
                     f"{'; '.join(quote(r) for r in g.itertuples())}.")
    notes += ["Similarity of the trained model's map to the map of the same image and class after randomisation "
              "(Adebayo et al. 2018): 1 = unchanged (the map ignores what was randomised: the check fails), ~0 = "
              "unrelated. Maps area-averaged to sanity.similarity_size px and min-max normalised; Spearman rank "
              "correlation, SSIM, Pearson correlation of the HOG descriptors (unsigned orientations: an inverted "
              "map scores 1); intervals: 95% bootstrap over images.",
              "cascading: the head, then the top share (`setting`) of the blocks, then (1) the stem too, take the "
              "weights of Table IV's randomised model; `n_groups` = groups randomised (head, blocks, stem). "
              "independent: one group at a time (`setting` = the group). random_label: the trained model "
              "explaining a random other class (Quantus' random logit), not a model retrained on shuffled labels. "
              "other_image (the reference level, no randomisation): each image's map against the next image's from "
              "the trained model; a randomised map that scores about this has lost what tied it to the image, even "
              "where a shared layout (objects near the centre) keeps it above 0.",
              "SCAN keeps its decoder (trained on the original model's features): only the backbone's features and "
              "gradients change, as in Table IV. `n_constant` = images where either map is constant (Spearman and "
              "HOG set to 0 there)."]
    return Table("", "Sanity checks on the maps: similarity to the trained model's maps after cascading, label and "
                 "independent randomisation", df.astype(object).where(df.notna(), None), notes,
                 name="sanity_similarity", markdown_columns=SIMILARITY_MARKDOWN, markdown_decimals=2)


# The CSV's columns; the Markdown keeps LOCALISATION_MD_COLUMNS (at most about 130 characters wide with the longest
# method name) and quotes the pointing game in a note per backbone. prior / diff /
# diff_ci95: the energy of the centre prior's map as concentrated as the method's maps (metrics.matched_prior), the
# method's energy minus it and its paired 95% interval; beats: "yes" when that interval lies above BEATS_MARGIN.
LOCALISATION_COLUMNS = ("backbone", "method", "energy", "energy_ci95", "prior", "diff", "diff_ci95", "beats",
                        "pointing", "pointing_ci95", "n_images", "prior_sigma", "concentration", "prior_concentration",
                        "prior_energy_ci95", "prior_pointing", "pointing_diff", "pointing_diff_ci95")
LOCALISATION_MD_COLUMNS = ("backbone", "method", "energy", "prior", "diff", "beats")
CHANCE_ROW = "uniform map (chance)"


def _ci(cell: pd.DataFrame, metric: str) -> str | None:
    lo, hi = (cell.at[metric, c] if metric in cell.index else math.nan for c in ("ci_lo", "ci_hi"))
    return None if pd.isna(lo) or pd.isna(hi) else f"[{fmt(lo)}, {fmt(hi)}]"


# Energy differences within this of 0 are ties: the maps are stored as float16, so the centre prior row and its
# matched prior (the same map up to the last float16 step) differ by ~1e-5 with an interval just as narrow.
BEATS_MARGIN = 0.001
# A matched prior whose concentration is this far from the method's was clamped (metrics.matched_prior).
CLAMP_GAP = 0.005


def beats_prior(lo: float, hi: float, margin: float = BEATS_MARGIN) -> str | None:
    """The verdict on a method minus its matched prior from the paired interval [lo, hi]: "yes" above `margin`,
    "below" under -`margin`, "no" otherwise (the interval reaches the tie zone around 0); None without an interval."""
    if pd.isna(lo) or pd.isna(hi):
        return None
    return "yes" if lo > margin else ("below" if hi < -margin else "no")


def _diff(v: float) -> float:
    """An energy difference as the table shows it: to 1e-4 (the energies print 3 digits; float16 noise, ~1e-5,
    would print as 1.63e-07), -0.0 as 0."""
    return round(float(v), 4) + 0.0


def _matched_prior_cells(prior: pd.DataFrame) -> dict[str, Any]:
    """A method's matched-prior columns from its `matched_prior` rows (empty when the JSON has none)."""
    if "energy" not in prior.index:
        return {}
    value = prior["value"]
    lo, hi = prior.at["energy_diff", "ci_lo"], prior.at["energy_diff", "ci_hi"]
    return {"prior": float(value["energy"]), "diff": _diff(value["energy_diff"]),
            "diff_ci95": None if pd.isna(lo) or pd.isna(hi) else f"[{fmt(_diff(lo))}, {fmt(_diff(hi))}]",
            "beats": beats_prior(lo, hi),
            "prior_sigma": float(value["sigma"]), "concentration": float(value["concentration_method"]),
            "prior_concentration": float(value["concentration_prior"]), "prior_energy_ci95": _ci(prior, "energy"),
            "prior_pointing": float(value["pointing"]), "pointing_diff": float(value["pointing_diff"]),
            "pointing_diff_ci95": _ci(prior, "pointing_diff")}


def localisation_table(results: pd.DataFrame) -> Table | None:
    """Energy inside the boxes and the pointing game per backbone and method (the evaluate JSONs' `localisation`),
    each with its 95% bootstrap interval; beside the energy, the method's matched prior (the centre prior's map as
    concentrated as its maps, `localisation.matched_prior`), the method minus it with the paired interval and
    whether the method beats it; per backbone a last row for the uniform map (chance level: its energy and pointing
    score are the boxes' mean area share). None when no method was scored on a boxed image (the data root has no
    boxes.csv, or none of the evaluation images has a box): no empty table."""
    sel = results[(results["part"] == "evaluate") & results["variant"].isin(["localisation", "matched_prior"])
                  & results["x"].isna()]
    scored = sel[(sel["metric"] == "energy") & (sel["variant"] == "localisation")]
    if scored.empty:
        return None
    rows, notes, verdicts = [], [], []
    for b in sorted(scored["backbone"].unique()):
        sb = sel[sel["backbone"] == b]
        methods = sorted(scored.loc[scored["backbone"] == b, "method"].unique(), key=method_sort_key)
        for m in methods:
            cell = sb[(sb["method"] == m) & (sb["variant"] == "localisation")].set_index("metric")
            row: dict[str, Any] = {"backbone": b, "method": m}
            for k in ("energy", "pointing"):
                row[k] = float(cell.at[k, "value"])
                row[f"{k}_ci95"] = _ci(cell, k)
            row["n_images"] = int(cell.at["n_images", "value"])
            row.update(_matched_prior_cells(sb[(sb["method"] == m) & (sb["variant"] == "matched_prior")]
                                            .set_index("metric")))
            rows.append(row)
        first = sb[(sb["method"] == methods[0]) & (sb["variant"] == "localisation")].set_index("metric")["value"]
        chance, n = float(first["chance_energy"]), int(first["n_images"])
        skipped = int(first.get("n_skipped", 0))
        rows.append({"backbone": b, "method": CHANCE_ROW, "energy": chance, "pointing": chance, "n_images": n})
        notes.append(f"{b}: chance level (uniform map) energy {fmt(chance)} = the boxes' mean area share on the "
                     f"{n} evaluation images with boxes; {skipped} evaluation image(s) without boxes skipped.")
        notes.append(f"{b}, pointing game [95% interval]: " + "; ".join(
            f"{METHOD_LABELS.get(r['method'], r['method'])} {fmt(r['pointing'])} {r['pointing_ci95'] or ''}".strip()
            for r in rows if r["backbone"] == b and r["method"] != CHANCE_ROW) + f"; uniform map {fmt(chance)}.")
        judged = [r for r in rows if r["backbone"] == b and r.get("beats") is not None]
        if judged:
            def names(v: str) -> str:
                return ", ".join(METHOD_LABELS.get(r["method"], r["method"]) for r in judged
                                 if r["beats"] == v) or "none"
            verdicts.append(f"{b}: beat their matched prior: {names('yes')}; no clear difference: {names('no')}; "
                            f"below it: {names('below')}.")
            clamped = [r for r in judged if abs(r["prior_concentration"] - r["concentration"]) > CLAMP_GAP]
            if clamped:
                verdicts.append(f"{b}: no centre prior map is as concentrated as the maps of " + "; ".join(
                    f"{METHOD_LABELS.get(r['method'], r['method'])} ({fmt(r['concentration'])}: sigma clamped at "
                    f"{fmt(r['prior_sigma'])}, a prior "
                    f"{'more' if r['prior_concentration'] > r['concentration'] else 'less'} concentrated, "
                    f"{fmt(r['prior_concentration'])})" for r in clamped) + ".")
    df = pd.DataFrame(rows).reindex(columns=list(LOCALISATION_COLUMNS))
    df["n_images"] = df["n_images"].astype("Int64")
    notes += verdicts
    notes += ["Energy: the share of the map's non-negative mass inside the union of the image's boxes; pointing: "
              "1 when the map's maximum lies in a box (ties: the share of tied pixels in a box); both on the maps "
              "as given (the model's input resolution), boxes mapped through the same resize as the image; "
              "intervals: 95% bootstrap over images.",
              f"prior: the energy of the method's matched prior, the centre prior's map (a centred isotropic "
              f"Gaussian, min-max normalised and stored as every map) at the sigma that makes it as concentrated as "
              f"the method's maps (mean share of the positive mass in the top {fmt_share(results)} of pixels), on "
              f"the same images; energy rewards compact maps, so this, not the centre prior's fixed width, is the "
              f"control a method must beat. diff: energy minus prior with its paired 95% bootstrap interval "
              f"(diff_ci95); beats: yes when that interval lies above {fmt(BEATS_MARGIN)}, below when under "
              f"-{fmt(BEATS_MARGIN)}, no otherwise (a smaller difference, below the energies' printed resolution, "
              f"is a tie: the centre prior row and its own matched prior differ by float16 rounding alone). The CSV "
              f"adds the prior's sigma (fraction of the side), both concentrations, the pointing game with its "
              f"interval, the prior's pointing, pointing minus prior (paired interval) and n_images."]
    return Table("", "Localisation: energy inside the object boxes against a concentration-matched centre prior, "
                 "and the pointing game", df.astype(object).where(df.notna(), None), notes, name="localisation",
                 markdown_columns=LOCALISATION_MD_COLUMNS)


def fmt_share(results: pd.DataFrame) -> str:
    """The top share of pixels the matched priors' concentrations used, as a percentage (the JSONs record it)."""
    shares = results.loc[(results["variant"] == "matched_prior") & (results["metric"] == "top_share"), "value"]
    return ", ".join(f"{v * 100:g}%" for v in sorted(shares.unique())) or "k%"


GRID_SPEC = TableSpec(
    "XI", "Table XI (ours, no paper counterpart): grid pointing game", part="grid", index=("method",),
    metrics=("share", "share_minus_scan", "share_minus_best", "pointing", "pointing_minus_scan",
             "pointing_minus_best", "share_minus_centre", "share_minus_random"), paper=(), pair_on=("method",),
    extra=("in_top4", "n_mosaics", "size"))
GRID_MARKDOWN = ("label", "share", "pointing", "share_minus_scan", "share_minus_best", "beats")
GRID_NOTES = (
    "Each mosaic is four val images of four classes (none an evaluation or held-out image), each at half the input "
    "side, in a 2 x 2 grid at the model's input size (Rao et al., CVPR 2022); the method explains each tile's "
    "class on the mosaic. share = the map's positive mass inside that tile over its positive mass in the mosaic; "
    "pointing = 1 when the map's maximum lies in that tile (ties: the share of the tied pixels there). Means over "
    "the mosaics' tiles; chance, and any map that ignores the class asked (uniform, centre prior), is exactly 0.25.",
    "Intervals: 95% percentile bootstrap over mosaics (a mosaic's four tiles share its images); differences "
    "(`share_minus_scan`, `share_minus_best`, ...) are paired: the method's score minus SCAN's / the best "
    "baseline's / the centre prior's / the random map's on the same mosaics, resampled together. An interval that "
    "excludes 0 separates the two methods.",
    "`beats` = whether the method's share beats the centre prior / the random map: yes (paired interval above 0), "
    "worse (below 0) or n.s. (it holds 0). `in_top4` = the share of tiles whose class the model ranks among its "
    "four highest logits on the mosaic (the same for every method). Here two decimals; the CSV holds every column "
    "(pointing differences and the differences to the calibration rows too) at three significant digits.")


def grid_tables(results: pd.DataFrame, params: Mapping[str, Any]) -> list[Table]:
    """Table XI, one per backbone with grid results (none without): per method mean share and pointing with their
    intervals, paired differences to SCAN and the best baseline by share, and whether it beats the centre prior
    and the random map (report/paired.py adds the paired rows)."""
    sel = results[results["part"] == "grid"]
    if sel.empty:
        return []
    table = build_table(GRID_SPEC, sel, params)
    df = table.df[table.df["backbone"] != "paper"].drop(columns=["paper_row", "paper_ref"])
    bounds = sel[sel["metric"].isin(["share_minus_centre", "share_minus_random"])].set_index(
        ["backbone", "method", "metric"])[["ci_lo", "ci_hi"]]

    def beats(b: str, m: str) -> str:
        keys = {ref: (b, m, f"share_minus_{ref}") for ref in ("centre", "random")}
        return beats_cell(m, tuple(keys), lambda ref: tuple(bounds.loc[keys[ref]]) if keys[ref] in bounds.index
                          else None)

    tables = []
    for b, rows in df.groupby("backbone", sort=True):
        rows = rows.assign(label=[METHOD_LABELS.get(m, m) for m in rows["method"]],
                           beats=[beats(b, m) for m in rows["method"]]).reset_index(drop=True)
        shares = dict(zip(rows["method"], rows["share"]))
        best = best_baseline(shares)
        size = rows["size"].dropna()
        notes = [f"{b}: {fmt(rows['n_mosaics'].iloc[0])} mosaics of {int(size.iloc[0]) if len(size) else '?'} px; "
                 f"best baseline by share: {METHOD_LABELS.get(best, best) if best else 'none'}.", *GRID_NOTES]
        tables.append(Table("XI", f"{GRID_SPEC.title} on {b}", rows.astype(object).where(rows.notna(), None),
                            notes, name=f"table11_{b}", markdown_columns=GRID_MARKDOWN, markdown_decimals=2))
    return tables


def timing_table(timings: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any],
                 paper: Paper | None = None) -> Table:
    """Table V from {backbone: results/timing/<backbone>.json} (scanbench.timing records)."""
    families = families_of(params)
    rows = [r for b, data in sorted(timings.items()) for m, t in data.get("methods", {}).items()
            for r in tidy(t, intervals={"ms_per_image": "ms_iqr"}, part="timing", backbone=b,
                          family=families.get(b, ""), method=m)]
    notes = [f"{b}: device {data.get('device', '?')}, {data.get('n_images', '?')} images"
             for b, data in sorted(timings.items())]
    return build_table(TIMING_TABLE, long_table(rows), params, paper, notes)


TEXT_COLUMNS = ("backbone", "method", "role", "randomisation", "setting", "paper_row", "paper_ref", "label", "beats",
                "differs")


def _decimals(cell: str, digits: int) -> str:
    """A formatted cell ("0.351", "[-3.84e-09, 0.0123]") with every number in `digits` decimals ("-0.00" as
    "0.00")."""
    def number(m: re.Match) -> str:
        out = f"{float(m.group()):.{digits}f}"
        return out[1:] if out.startswith("-") and not out.strip("-0.") else out
    return re.sub(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", number, cell)


def _markdown_cells(table: Table) -> pd.DataFrame:
    """The Markdown's cells: every column formatted, or only `markdown_columns`, each with its hidden interval
    (and with `markdown_decimals`, every number of a non-count column in that many decimals)."""
    cells = table.df.map(fmt)
    if table.markdown_decimals is not None:
        for c in cells:
            if c not in TEXT_COLUMNS and not c.startswith("n_"):
                cells[c] = [_decimals(v, table.markdown_decimals) for v in cells[c]]
    if table.markdown_columns is None:
        return cells
    shown = list(table.markdown_columns)
    out = cells[shown].copy()
    for c in shown:
        for ci in (f"{c}_ci95", f"{c}_iqr"):
            if ci in cells and ci not in shown:
                out[c] = [f"{v} {i}" if v and i else v for v, i in zip(cells[c], cells[ci])]
    return out


def markdown(table: Table) -> str:
    cells = _markdown_cells(table)
    numeric = [c not in TEXT_COLUMNS for c in cells]
    body = cells.to_markdown(index=False, disable_numparse=True, colalign=["right" if n else "left" for n in numeric])
    notes = "".join(f"\n- {n}" for n in table.notes)
    return f"## {table.title}\n\n{body}\n" + (f"\nNotes:{notes}\n" if notes else "")


def write_table(table: Table, out_dir: str | Path, md_name: str | None = None) -> tuple[Path, Path]:
    """<stem>.csv (the same formatted cells as the Markdown) and <stem>.md (or md_name)."""
    csv_path, md_path = Path(out_dir) / f"{table.stem}.csv", Path(out_dir) / (md_name or f"{table.stem}.md")
    write_text(csv_path, table.df.map(fmt).to_csv(index=False))
    write_text(md_path, markdown(table))
    return csv_path, md_path


def write_timing_table(timings: Mapping[str, Mapping[str, Any]], params: Mapping[str, Any],
                       out_dir: str | Path) -> tuple[Path, Path]:
    """For the timing stage: Table V as <out_dir>/table5.csv and <out_dir>/README.md (the report's README
    links timing/README.md)."""
    return write_table(timing_table(timings, params), out_dir, md_name="README.md")
