"""Tables I-IX as DataFrames: our numbers with the paper's beside them, then CSV + Markdown writers.

Column conventions: our values carry the metric's name (`auc_d`, `neg_auc`, ...), the 95% bootstrap
interval sits in `<metric>_ci95`, and the paper's value for the same cell in `paper_<metric>` right after.
`paper_row` / `paper_ref` say which printed row and which model/table the paper value comes from.
Paper rows that pair with none of our rows are appended as reference rows (backbone "paper"), so every
number of the paper's table is visible. A missing result is an empty cell; a table with no results of
ours gets a note row saying which stage to run.
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

from ..errors import ScanbenchError
from ..io import atomic_path, write_text
from . import AUC_KEYS, CALIBRATION_METHODS, Results, sort_methods

PAPER_VALUES_PATH = Path(__file__).with_name("paper_values.yaml")
ROMAN = {"I": 1, "II": 2, "III": 3, "IV": 4, "V": 5, "VI": 6, "VII": 7, "VIII": 8, "IX": 9}
PAPER_METRICS = ("auc_d", "neg_auc", "pos_auc", "drop", "inc", "win", "ms_per_image")
EXPL_COLS = ("auc_d", "neg_auc", "pos_auc", "drop", "inc", "win")
AUC_COLS = ("auc_d", "neg_auc", "pos_auc")   # the paper's column order
INT_COLS = ("n_images",)


# ---------------------------------------------------------------------------------------------- paper values

@dataclass(frozen=True)
class PaperValues:
    records: pd.DataFrame            # one row per printed row: table, dataset, model, row, setting, ...
    model_for_family: dict[str, str]
    layer_roles: dict[str, dict[str, str]]
    component_aliases: dict[str, str]

    def table(self, table: str) -> pd.DataFrame:
        return self.records[self.records["table"] == table]

    def lookup(self, table: str, model: str | None, row: str | None = None, setting: Any = None,
               dataset: str | None = None, **extra: Any) -> dict | None:
        """The one record matching every given key (None keys are ignored), or None."""
        if model is None:
            return None
        df = self.table(table)
        df = df[df["model"] == model]
        if row is not None:
            df = df[df["row"] == row]
        if dataset is not None:
            df = df[df["dataset"] == dataset]
        if setting is not None:
            df = df[df["setting"].map(lambda s: _same_setting(s, setting))]
        for k, v in extra.items():
            df = df[df[k].map(lambda s: _same_setting(s, v))]
        if len(df) > 1:
            raise ScanbenchError(f"paper_values.yaml: {len(df)} records match table {table} {model} {row} "
                                 f"{setting}; make the records unique")
        return None if df.empty else df.iloc[0].to_dict()


def _same_setting(a: Any, b: Any) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)):
        return False
    fa, fb = _as_float(a), _as_float(b)
    if fa is not None and fb is not None:
        return fa == fb
    return str(a) == str(b)


def _as_float(v: Any) -> float | None:
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


@lru_cache(maxsize=4)
def load_paper_values(path: str | Path = PAPER_VALUES_PATH) -> PaperValues:
    with open(path) as fh:
        data = yaml.safe_load(fh)
    records = pd.DataFrame(data["records"])
    records["row_order"] = range(len(records))
    for col in ("setting", "alpha", "source", *PAPER_METRICS):
        if col not in records:
            records[col] = None
    return PaperValues(records, dict(data["paper_model_for_family"]),
                       {k: dict(v) for k, v in data["layer_roles"].items()}, dict(data["component_aliases"]))


def paper_dataset_for(params: Mapping[str, Any]) -> str:
    """The paper dataset our data stands in for: CUB or Food-101 when the data root says so, else ImageNet."""
    root = str(params.get("data", {}).get("root", "")).lower()
    if "cub" in root or "bird" in root:
        return "CUB-200-2011"
    if "food" in root:
        return "Food-101"
    return "ImageNet"


# ---------------------------------------------------------------------------------------------- helpers

@dataclass
class Table:
    number: str                       # "I" .. "IX"
    title: str
    df: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    @property
    def stem(self) -> str:
        return f"table{ROMAN[self.number]}"


def _r(v: Any, nd: int = 2) -> float | None:
    if v is None:
        return None
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(v) else round(v, nd)


def _ci(v: Any) -> str | None:
    if not v or any(x is None for x in v):
        return None
    return f"[{float(v[0]):.2f}, {float(v[1]):.2f}]"


def _paper_ref(rec: Mapping | None, table: str) -> str | None:
    if rec is None:
        return None
    where = "Sec. IV.A" if rec["table"] == "text" else f"Table {rec['table']}"
    return f"{rec['model']}, {rec['dataset']} ({where})"


def _cells(cols: Sequence[str], ours: Mapping | None, paper: Mapping | None,
           ci: Mapping | None = None) -> dict[str, Any]:
    """Our value, its CI (AUCs only) and the paper's value, side by side, for each metric column."""
    out: dict[str, Any] = {}
    for c in cols:
        out[c] = _r((ours or {}).get(c))
        if c in AUC_KEYS and ci is not None:
            out[f"{c}_ci95"] = _ci(ci.get(f"{c}_ci"))
        out[f"paper_{c}"] = _r((paper or {}).get(c))
    return out


def _finish(rows: list[dict], key_cols: Sequence[str], value_cols: Sequence[str], has_ours: bool,
            missing_note: str) -> pd.DataFrame:
    """Assemble rows into a DataFrame with a fixed column order; drop paper columns the paper never fills."""
    if not has_ours:
        rows = [{key_cols[0]: "(no results)", key_cols[1]: missing_note}] + rows
    df = pd.DataFrame(rows)
    for c in list(key_cols) + list(value_cols):
        if c not in df:
            df[c] = None
    df = df[list(key_cols) + [c for c in value_cols]]
    empty_paper = [c for c in df.columns if c.startswith("paper_") and c not in ("paper_row", "paper_ref")
                   and df[c].isna().all()]
    df = df.drop(columns=empty_paper)
    df = df.astype(object).where(df.notna(), None)
    for c in INT_COLS:  # pandas turned counts into floats beside empty cells; keep them counts
        if c in df:
            df[c] = pd.Series([None if v is None else int(v) for v in df[c]], index=df.index, dtype=object)
    return df


def _value_cols(cols: Sequence[str], with_ci: bool) -> list[str]:
    out = []
    for c in cols:
        out.append(c)
        if with_ci and c in AUC_KEYS:
            out.append(f"{c}_ci95")
        out.append(f"paper_{c}")
    return out


def _reference_rows(paper: PaperValues, table: str, used: set[int], key: str = "method",
                    cols: Sequence[str] = ("auc_d", "neg_auc", "pos_auc")) -> list[dict]:
    """Paper rows of `table` that no row of ours paired with: listed for reference, our cells empty."""
    rows = []
    for rec in paper.table(table).to_dict("records"):
        if rec["row_order"] in used:
            continue
        row = {"backbone": "paper", key: rec["row"] if key == "method" else _setting_label(rec),
               "paper_row": rec["paper_row"], "paper_ref": _paper_ref(rec, table)}
        row.update(_cells(cols, None, rec))
        rows.append(row)
    return rows


def _setting_label(rec: Mapping) -> str:
    s = rec.get("setting")
    if rec.get("alpha") is not None and not (isinstance(rec["alpha"], float) and math.isnan(rec["alpha"])):
        return f"{s} (alpha={_fmt_num(rec['alpha'])})"
    return _fmt_num(s)


def _fmt_num(v: Any) -> str:
    f = _as_float(v)
    if f is not None and f == int(f):
        return str(int(f))
    return str(v)


def _backbones_of(results: Results, family: str | None, source: Mapping) -> list[str]:
    return [b for b in sorted(source) if family is None or results.family(b) == family]


# ---------------------------------------------------------------------------------------------- Tables I, II

def _explanation_table(number: str, family: str, paper_table: str, results: Results,
                       metrics: Mapping[str, Any], paper: PaperValues, dataset: str,
                       paper_methods: Sequence[str]) -> Table:
    model = paper.model_for_family[family]
    expl = metrics.get("explanations", {})
    backbones = _backbones_of(results, family, results.evaluate)
    rows: list[dict] = []
    used: set[int] = set()
    for b in backbones:
        evals = results.evaluate[b]
        ours_methods = list(evals)
        for m in sort_methods(list(dict.fromkeys([*paper_methods, *ours_methods]))):
            rec = paper.lookup(paper_table, model, m, dataset=dataset)
            if rec is None and m in CALIBRATION_METHODS:
                rec = paper.lookup("text", model, m, dataset=dataset)
            if rec is not None:
                used.add(rec["row_order"])
            ours = (expl.get(b, {}).get("methods", {}).get(m)) if m in evals else None
            fair = evals.get(m, {}).get("variants", {}).get("fair") if m in evals else None
            full = evals.get(m, {}).get("variants", {}).get("full") if m in evals else None
            row = {"backbone": b, "method": m, "paper_row": rec["paper_row"] if rec else None,
                   "paper_ref": _paper_ref(rec, paper_table)}
            row.update(_cells(EXPL_COLS, ours, rec, ci=fair or {}))
            row["auc_d_full"] = _r((full or {}).get("auc_d"))
            row["n_images"] = evals[m].get("n_images") if m in evals else None
            rows.append(row)
    if not backbones:  # no backbone of this family ran: show the paper's rows alone
        used = set()
    ref = _reference_rows(paper, paper_table, used, cols=EXPL_COLS)
    value_cols = _value_cols(EXPL_COLS, with_ci=True) + ["auc_d_full", "n_images"]
    df = _finish(rows + ref, ["backbone", "method", "paper_row", "paper_ref"], value_cols, bool(backbones),
                 f"no {family} backbone evaluated: run the `evaluate` stage")
    return Table(number, "", df)


def table1(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    """Table I: every method on the transformer backbone(s), beside the paper's ViT-B/16 (same dataset)."""
    methods = [r for r in paper.table("I")["row"].unique()]
    t = _explanation_table("I", "vit", "I", results, metrics, paper, dataset, methods)
    t.title = (f"Table I: explanation methods on the transformer backbone(s); paper: ViT-B/16 on {dataset} "
               f"(its other datasets listed below as reference rows)")
    t.notes = [
        "AUCs use the fair resolution (map average-pooled to the backbone grid, then upsampled); `auc_d_full` "
        "is AUC-D at full resolution. `_ci95` = 95% bootstrap interval over images.",
        "Win% = share of images on which the method's Drop% is the lowest among the methods of this backbone "
        "(ties count for each; the random map is scored against the others but never takes a win away).",
        "Paper AUC columns of the first six ImageNet rows are quoted by the paper from Chefer et al. [15]; "
        "the random row's paper values are from the paper's Sec. IV.A (ten random maps per image).",
        "LRP and partial LRP are not implemented here: their rows carry the paper's values only.",
    ]
    return t


def table2(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    """Table II: every method on the CNN backbone(s), beside the paper's ResNet50V2 (ImageNet)."""
    methods = list(paper.table("II")["row"].unique())
    t = _explanation_table("II", "cnn", "II", results, metrics, paper, "ImageNet", methods)
    t.title = "Table II: explanation methods on the CNN backbone(s); paper: ResNet50V2 on ImageNet"
    t.notes = ["The paper's Table II reports AUCs only; Drop%, Inc%, Win% and the full-resolution AUC-D are "
               "ours. Win% as in Table I."]
    return t


# ---------------------------------------------------------------------------------------------- Table III

def best_baseline(methods: Mapping[str, Mapping[str, Any]]) -> str | None:
    """The method other than SCAN and the calibration row with the highest AUC-D (None if none)."""
    cands = [(m, v.get("auc_d")) for m, v in methods.items()
             if m != "scan" and m not in CALIBRATION_METHODS and v.get("auc_d") is not None]
    return max(cands, key=lambda mv: mv[1])[0] if cands else None


def table3(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    """Table III: per backbone, SCAN vs the best baseline (by AUC-D) and LIME; the paper's models as reference."""
    expl = metrics.get("explanations", {})
    rows: list[dict] = []
    for b in sorted(expl):
        family = expl[b].get("family")
        methods = expl[b]["methods"]
        best = best_baseline(methods)
        chosen = [m for m in dict.fromkeys(["scan", best, "lime"]) if m and m in methods]
        model = paper.model_for_family.get(family)
        for m in chosen:
            table = "I" if family == "vit" else "II"
            rec = paper.lookup(table, model, m, dataset="ImageNet")
            fair = results.evaluate[b][m].get("variants", {}).get("fair", {})
            row = {"backbone": b, "method": m + (" (best baseline)" if m == best else ""),
                   "paper_row": rec["paper_row"] if rec else None, "paper_ref": _paper_ref(rec, table)}
            row.update(_cells(AUC_COLS, methods[m], rec, ci=fair))
            rows.append(row)
    ref = _reference_rows(paper, "III", set())
    cols = ("auc_d", "neg_auc", "pos_auc")
    df = _finish(rows + ref, ["backbone", "method", "paper_row", "paper_ref"], _value_cols(cols, True),
                 bool(rows), "no backbone evaluated: run the `evaluate` stage")
    return Table("III", "Table III: SCAN vs the best baseline per backbone; our rows stand beside the paper's "
                        "same method on its reference model for the family (ViT-B/16 / ResNet50V2), and the "
                        "paper's Table III models follow as reference rows", df,
                 ["The best baseline is the non-SCAN, non-random method with the highest AUC-D on that backbone."])


# ---------------------------------------------------------------------------------------------- Table IV

SANITY_SETTINGS = ("original", "random_weights", "random_label")


def table4(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    """Table IV: sanity checks (random weights, random label) per backbone and method."""
    rows: list[dict] = []
    used: set[int] = set()
    for b in sorted(results.sanity):
        model = paper.model_for_family.get(results.family(b))
        for m in sort_methods(list(results.sanity[b])):
            for s in SANITY_SETTINGS:
                rec = paper.lookup("IV", model, m, setting=s)
                if rec is not None:
                    used.add(rec["row_order"])
                row = {"backbone": b, "method": m, "setting": s, "paper_row": rec["paper_row"] if rec else None,
                       "paper_ref": _paper_ref(rec, "IV")}
                row.update(_cells(AUC_COLS, results.sanity[b][m].get(s), rec))
                rows.append(row)
    for rec in paper.table("IV").to_dict("records"):
        if rec["row_order"] not in used:
            row = {"backbone": "paper", "method": rec["row"], "setting": rec["setting"],
                   "paper_row": rec["paper_row"], "paper_ref": _paper_ref(rec, "IV")}
            row.update(_cells(AUC_COLS, None, rec))
            rows.append(row)
    df = _finish(rows, ["backbone", "method", "setting", "paper_row", "paper_ref"], _value_cols(AUC_COLS, False),
                 bool(results.sanity), "no sanity results: run the `sanity` stage")
    return Table("IV", "Table IV: sanity checks (model-parameter and label randomisation); paper: ResNet50V2, "
                       "ImageNet", df,
                 ["SCAN under random weights applies the decoder trained on the original model to the "
                  "randomised model's features and gradients (it is not retrained).",
                  "Random label: a uniformly random class other than the predicted one is explained."])


# ---------------------------------------------------------------------------------------------- Table V

def table5(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    """Table V: explanation time per image (ms), batch 1 median and IQR, batched, ratio to Grad-CAM."""
    rows: list[dict] = []
    used: set[int] = set()
    notes = []
    for b in sorted(results.timing):
        data = results.timing[b]
        notes.append(f"{b}: device {data.get('device', '?')}, {data.get('n_images', '?')} images")
        model = paper.model_for_family.get(results.family(b))
        for m in sort_methods(list(data.get("methods", {}))):
            t = data["methods"][m]
            rec = paper.lookup("V", model, m)
            if rec is not None:
                used.add(rec["row_order"])
            iqr = t.get("ms_iqr")
            rows.append({"backbone": b, "method": m, "paper_row": rec["paper_row"] if rec else None,
                         "paper_ref": _paper_ref(rec, "V"), "ms_per_image": _r(t.get("ms_per_image")),
                         "paper_ms_per_image": _r((rec or {}).get("ms_per_image")),
                         "ms_iqr": f"[{iqr[0]:.2f}, {iqr[1]:.2f}]" if iqr else None,
                         "ms_per_image_batched": _r(t.get("ms_per_image_batched")),
                         "ratio_to_gradcam": _r(t.get("ratio_to_gradcam")),
                         "n_images": t.get("n_images", data.get("n_images"))})
    for rec in paper.table("V").to_dict("records"):
        if rec["row_order"] not in used:
            rows.append({"backbone": "paper", "method": rec["row"], "paper_row": rec["paper_row"],
                         "paper_ref": _paper_ref(rec, "V"), "paper_ms_per_image": _r(rec["ms_per_image"])})
    df = _finish(rows, ["backbone", "method", "paper_row", "paper_ref"],
                 ["ms_per_image", "paper_ms_per_image", "ms_iqr", "ms_per_image_batched", "ratio_to_gradcam",
                  "n_images"],
                 bool(results.timing), "no timing results: run the `timing` stage")
    notes.append("Timings are machine-dependent: the paper's are on an Nvidia A5000 GPU (64 samples); ours on "
                 "the device named above. Compare ratios, not milliseconds.")
    return Table("V", "Table V: explanation time per image (ms; batch 1 median, IQR, batched) and the ratio to "
                      "Grad-CAM; paper: ResNet50V2", df, notes)


# ---------------------------------------------------------------------------------------------- Tables VI-IX

def setting_sort_key(kind: str, setting: Any) -> tuple:
    """Numeric settings (alpha, P) in numeric order; others as given (layers: default first)."""
    num = setting_number(setting)
    if kind in ("alpha", "p") and num is not None:
        return (0, num, str(setting))
    if kind == "layer":
        order = ["default", "alt1", "shallower", "alt2", "shallowest", "deeper"]
        return (0, order.index(setting) if setting in order else len(order), str(setting))
    if kind == "components":
        order = ["full", "scan", "default", "alpha1", "no_mask", "no_blur", "sigmoid"]
        return (0, order.index(setting) if setting in order else len(order), str(setting))
    return (1, 0, str(setting))


def setting_number(setting: Any) -> float | None:
    f = _as_float(setting)
    if f is not None:
        return f
    m = re.search(r"-?\d+(?:\.\d+)?", str(setting))
    return float(m.group()) if m else None


def _ablation_table(kind: str, number: str, title: str, results: Results, paper: PaperValues,
                    match: Callable[[str, str | None, str, Mapping], dict | None], notes: list[str]) -> Table:
    rows: list[dict] = []
    used: set[int] = set()
    per_kind = results.ablation.get(kind, {})
    for b in sorted(per_kind):
        family = results.family(b)
        for s in sorted(per_kind[b], key=lambda s: setting_sort_key(kind, s)):
            data = per_kind[b][s]
            rec = match(family, s, data)
            if rec is not None:
                used.add(rec["row_order"])
            row = {"backbone": b, "setting": s, "paper_row": rec["paper_row"] if rec else None,
                   "paper_ref": _paper_ref(rec, number)}
            row.update(_cells(AUC_COLS, data, rec))
            row["n_images"] = data.get("n_images")
            row["val_confidence_area"] = _r(data.get("val_confidence_area"), 4)
            rows.append(row)
    ref = _reference_rows(paper, number, used, key="setting")
    df = _finish(rows + ref, ["backbone", "setting", "paper_row", "paper_ref"],
                 _value_cols(AUC_COLS, False) + ["n_images", "val_confidence_area"], bool(per_kind),
                 f"no {kind} ablation results: run the `ablation_{kind}` stage")
    return Table(number, title, df, notes)


def table6(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    def match(family, s, data):
        return paper.lookup("VI", paper.model_for_family.get(family), "scan", setting=setting_number(s))

    return _ablation_table("alpha", "VI", "Table VI: ablation on alpha (P = 95); paper: ViT-B/16 6th block, "
                           "ResNet50V2 last conv layer", results, paper, match,
                           ["Each alpha trains its own decoder (ablation.epochs) and is scored on "
                            "ablation.n_images images, so the alpha = 4 row may differ from Tables I/II."])


def table7(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet",
           alpha: float = 4) -> Table:
    """Layer ablation; each row pairs with the paper's row of the same layer role at the alpha it ran with
    (the `alpha` field of its JSON, else `alpha`)."""
    def match(family, s, data):
        role = paper.layer_roles.get(family or "", {}).get(s)
        a = data.get("alpha") if data.get("alpha") is not None else alpha
        return paper.lookup("VII", paper.model_for_family.get(family), "scan", setting=role, alpha=a) \
            if role else None

    return _ablation_table("layer", "VII", f"Table VII: ablation on the SCAN layer (alpha = {_fmt_num(alpha)}, "
                           f"P = 95); paper: ViT-B/16 3rd/6th/9th block, ResNet50V2 last/14x14/28x28 conv",
                           results, paper, match,
                           ["Layers pair with the paper's by role: default = the paper's choice; ViT alt1 = "
                            "shallower (paper 3rd block), alt2 = deeper (paper 9th); CNN alt1 / alt2 = one / two "
                            "steps shallower (paper last 14x14 / 28x28 conv). For EfficientNet-Lite0, alt1 "
                            "(blocks.5) is still at 7x7 and alt2 (blocks.4) at 14x14.",
                            "The paper's alpha = 8 columns have no counterpart here (listed as reference rows)."])


def table8(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    def match(family, s, data):
        return paper.lookup("VIII", paper.model_for_family.get(family), "scan", setting=setting_number(s))

    return _ablation_table("p", "VIII", "Table VIII: ablation on the inference percentile P (alpha = 4); paper: "
                           "ViT-B/16 6th block, ResNet50V2 last conv layer", results, paper, match,
                           ["The main decoder is reused; only the inference-time percentile P changes."])


def table9(results: Results, metrics: Mapping[str, Any], paper: PaperValues, dataset: str = "ImageNet") -> Table:
    def match(family, s, data):
        comp = paper.component_aliases.get(s)
        return paper.lookup("IX", paper.model_for_family.get(family), "scan", setting=comp) if comp else None

    return _ablation_table("components", "IX", "Table IX: ablation of SCAN's components; paper: ResNet50V2, "
                           "ImageNet", results, paper, match,
                           ["alpha1 = alpha 1 (no positive/negative distinction); no_mask = the decoder sees "
                            "the unmasked features F (train and inference); no_blur = unblurred target; sigmoid = sigmoid instead of the stretched "
                            "sine confidence. The paper ran this on ResNet50V2 only."])


def ablation_alpha(params: Mapping[str, Any]) -> float:
    """The alpha of the layer / components / P ablations: ablation.base_alpha, else scan.alpha, else 4."""
    return float(params.get("ablation", {}).get("base_alpha", params.get("scan", {}).get("alpha", 4)))


TABLE_BUILDERS = (table1, table2, table3, table4, table5, table6, table7, table8, table9)


def build_tables(results: Results, metrics: Mapping[str, Any], paper: PaperValues | None = None,
                 params: Mapping[str, Any] | None = None) -> list[Table]:
    paper = paper or load_paper_values()
    params = params or {}
    dataset = paper_dataset_for(params)
    alpha = ablation_alpha(params)
    tables = []
    for build in TABLE_BUILDERS:
        if build is table7:
            tables.append(build(results, metrics, paper, dataset, alpha=alpha))
        else:
            tables.append(build(results, metrics, paper, dataset))
    return tables


# ---------------------------------------------------------------------------------------------- writers

def table_markdown(table: Table) -> str:
    body = table.df.to_markdown(index=False, floatfmt=".2f", missingval="")
    notes = "".join(f"\n- {n}" for n in table.notes)
    return f"## {table.title}\n\n{body}\n" + (f"\nNotes:\n{notes.lstrip(chr(10))}\n" if notes else "")


def write_table(table: Table, out_dir: str | Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{table.stem}.csv", out_dir / f"{table.stem}.md"
    with atomic_path(csv_path, suffix=".csv") as tmp:
        table.df.to_csv(tmp, index=False)
    write_text(md_path, table_markdown(table))
    return csv_path, md_path


def write_tables(tables: Sequence[Table], out_dir: str | Path) -> list[Path]:
    paths: list[Path] = []
    for t in tables:
        paths.extend(write_table(t, out_dir))
    return paths
