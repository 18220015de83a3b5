"""reports/README.md: links every table and figure and states the profile, sizes, settings and every
deviation from the paper (worded from the params that actually ran, not from a fixed text)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from ..per_image_metrics import INPUTS, PER_IMAGE_METRICS
from .results import METHOD_LABELS, families_of
from .tables import Table, best_baseline, fmt

if TYPE_CHECKING:  # figures imports matplotlib/seaborn (seconds); the README only needs path + caption
    from .figures import Figure

PAPER_WIDTHS_CNN = [512, 384, 256, 192, 128, 64]
TOP1_FLOOR = 80.0   # val top-1 (%) below which a target's explanations say little about the methods
PAPER_LIME_SAMPLES = 1000
PAPER_RISE = {"n_masks": 4000, "s": 8, "p1": 0.5}
WIN_DEFINITION = (
    "**Win%** is not defined precisely in the paper. Here it is the share of evaluation images on which the "
    "method's Drop% is the lowest among the methods evaluated on that backbone; ties count as a win for each "
    "tied method (so a backbone's Win% can sum to more than 100). The calibration rows (random map, centre "
    "prior) are not competitors: their Win% is the share of images on which they would tie or beat every real "
    "method, so they take no win away from them.")


def per_image_definition() -> str:
    """The README's line on the per-image metrics (scanbench.per_image_metrics): labels, sources, formulas."""
    sources = ", ".join(dict.fromkeys(m.source for m in PER_IMAGE_METRICS if m.source))
    return (f"**{' / '.join(m.label for m in PER_IMAGE_METRICS)}**" + (f" ({sources})" if sources else "")
            + f": {INPUTS}; " + "; ".join(f"{m.label} = {m.definition}" for m in PER_IMAGE_METRICS) + ".")


def _rel(path: Path, base: Path) -> str:
    return Path(os.path.relpath(path, base)).as_posix()


def deviations(params: Mapping[str, Any], fitted_heads: Sequence[str] = ()) -> list[str]:
    """Every way this run differs from the paper, from the params that ran (`fitted_heads`: the backbones whose
    classifier the `head` stage fitted for the data)."""
    out = []
    root = str(params.get("data", {}).get("root", "")).lower()
    backbones = list(params.get("backbones", []))
    scan, explain = params.get("scan", {}), params.get("explain", {})
    if "imagenette" in root:
        out.append("Dataset: Imagenette (10 ImageNet classes, 224 px) instead of ImageNet (1000 classes), "
                   "CUB-200-2011 and Food-101; the paper's values are listed beside ours for reference only.")
    if "effnet_lite0" in backbones:
        head = ("a classifier fitted here for the data's classes (the `head` stage)" if "effnet_lite0" in fitted_heads
                else "ImageNet logits restricted to the data's classes")
        out.append(f"CNN target: EfficientNet-Lite0 (Google's ImageNet weights, {head}) instead of "
                   "ResNet50V2. SCAN reads its 192x7x7 `blocks.5`, not the paper's "
                   "last convolutional layer (`conv_head`): on held-out images that decoder beat conv_head's and "
                   "the centre prior (docs/DECISIONS.md).")
    if "vit_tiny_convstem" in backbones:
        vit = params.get("targets", {}).get("vit", {})
        out.append(f"Transformer target: a small ViT trained here (distilled from EfficientNet-Lite0) instead of "
                   f"the pretrained ViT-B/16: {vit.get('image_size', 64)} px input, "
                   f"{vit.get('image_size', 64) // vit.get('patch', 8)}x"
                   f"{vit.get('image_size', 64) // vit.get('patch', 8)} tokens, {vit.get('depth', 6)} blocks of "
                   f"width {vit.get('width', 192)}, {vit.get('heads', 3)} heads, a convolutional stem (three "
                   f"stride-2 3x3 convs) in place of the linear patch projection. Its SCAN layer is the middle "
                   f"block (the paper's 6th of 12).")
    if "vit_hybrid_lite0" in backbones:
        vit = params.get("targets", {}).get("vit", {})
        out.append(f"Transformer target: a hybrid ViT trained here (distilled from EfficientNet-Lite0) instead of "
                   f"the pretrained ViT-B/16: 112 px input; EfficientNet-Lite0's pretrained trunk up to `blocks.4` "
                   f"(frozen) gives 7x7 tokens (timm's HybridEmbed, as in timm's hybrid ViTs), then a CLS token and "
                   f"4 timm blocks of width {vit.get('width', 192)}, {vit.get('heads', 3)} heads, trained "
                   f"{vit.get('epochs', '?')} epochs. Its SCAN layer is the middle block (the paper's 6th of 12); "
                   f"the sanity cascade's stem includes the trunk.")
    widths = scan.get("widths", {})
    if widths.get("cnn") and list(widths["cnn"]) != PAPER_WIDTHS_CNN:
        out.append(f"Decoder widths narrower than the paper's {PAPER_WIDTHS_CNN} (CPU budget): CNN "
                   f"{list(widths['cnn'])}, ViT {list(widths.get('vit', []))}.")
    lime = explain.get("lime", {})
    if lime.get("num_samples") is not None and lime["num_samples"] != PAPER_LIME_SAMPLES:
        out.append(f"LIME with {lime['num_samples']} perturbation samples per image (paper profile: "
                   f"{PAPER_LIME_SAMPLES}).")
    rise = explain.get("rise", {})
    if rise and any(rise.get(k) != v for k, v in PAPER_RISE.items()):
        out.append(f"RISE with N = {rise.get('n_masks')} masks on a {rise.get('s')}x{rise.get('s')} grid, "
                   f"p1 = {rise.get('p1')} (paper profile: N = 4000, s = 8, p1 = 0.5).")
    centre = explain.get("centre") or {}
    if centre.get("sigma") is not None:
        out.append(f"A centre-prior baseline (ours, not the paper's): one centred isotropic Gaussian map for every "
                   f"image, sigma = {centre['sigma']} x the image side, a second calibration row beside the random "
                   f"map.")
    if scan.get("steps") is not None:
        n_train = params.get("features", {}).get("n_train")
        on = "every training image" if n_train is None else f"at most {n_train} training images"
        out.append(f"SCAN decoders trained for {scan['steps']} steps of {scan.get('batch_size')} images on {on} "
                   f"(the paper: 5 epochs on ImageNet).")
    if scan.get("out_size") != 224:
        out.append("SCAN reconstructs (and its confidence map lives) at 8 px per feature cell, the bandwidth of its "
                   "blurred target, not at the input size; the map is upsampled bilinearly; the upsampling stages "
                   "are conv + bilinear x2, not transposed convolutions (docs/DECISIONS.md).")
    out += [
        "Confidence (Eq. 4) is divided by 2 after adding 1, so that it lies in [0, 1] as the paper states.",
        "Where the authors' code differs from the paper we follow the paper's equations: 0.15 (not 1.5) in "
        "Eq. 4, alpha*C (not C/alpha) in Eq. 9, training percentile P drawn from [70, 100) (not [0, 95)), and "
        "the predicted class (not the ground-truth label) for the gradient in training.",
        "LRP and partial LRP propagate relevance with Chefer et al.'s rules down to the patch tokens (not through "
        "the patch embedding to pixels), so their maps live on the token grid as the attention methods' do.",
        "The SCAN sanity check (random weights) applies the decoder trained on the original model to the "
        "randomised model's features and gradients; it is not retrained.",
    ]
    if (params.get("sanity") or {}).get("cascade"):
        out.append("Sanity checks on the maps (ours, beside Table IV, after Adebayo et al. 2018): Spearman, SSIM and "
                   "HOG similarity of the trained model's maps to the maps after cascading (shares of the blocks "
                   f"{params['sanity']['cascade']}, 1 = every weight) and independent layer randomisation and label "
                   "randomisation (a random other class explained, not a model retrained on shuffled labels), at "
                   f"{params['sanity'].get('similarity_size')} px; SCAN keeps its decoder.")
    grid = params.get("grid") or {}
    if grid:
        pool = (f"{grid.get('n_candidates')} seeded candidates" if grid.get("n_candidates") else
                "the candidates")
        tiles = (f"the images the model classifies correctly alone (softmax >= {grid.get('min_confidence')}) among "
                 f"{pool}" if grid.get("correct_only") else f"{pool}, whether or not the model classifies them "
                 "correctly")
        out.append(f"Grid pointing game (ours, after Rao et al., CVPR 2022; Table XI): {grid.get('n_mosaics')} "
                   f"seeded 2 x 2 mosaics per backbone of four val images of four classes, none an evaluation or "
                   f"held-out image, drawn from {tiles}; "
                   "every method explains each tile's class on the mosaic, scored by its share of the map's "
                   "positive mass and by pointing (chance: 0.25).")
    out += [
        "Evaluation uses a fixed seeded subset of the validation split (sizes above), and every AUC comes with "
        "a 95% bootstrap interval over images; the paper reports point values. Every method's AUC-D is also "
        "compared with SCAN's and the centre prior's by a paired bootstrap on the same images (ours; the paper "
        "has no such comparison).",
        "Timings (Table V, written by the `timing` stage) are from this machine and are not comparable in "
        "absolute terms with the paper's GPU timings; compare the ratios.",
    ]
    return out


def _fitted_head(results_dir: str | Path, backbone: str) -> bool:
    """Whether the targets stage's record of `backbone` names a head the `head` stage fitted."""
    path = Path(results_dir) / "targets" / f"{backbone}.json"
    try:
        return "head" in json.loads(path.read_text())
    except (OSError, ValueError):
        return False


def weak_model_warning(profile: str, targets: Mapping[str, Any]) -> list[str]:
    """A warning block when this run's models are too weak for conclusions: the smoke profile (tiny models on a
    few images, for CI), or any target below TOP1_FLOOR val top-1."""
    weak = {b: t.get("val_top1") for b, t in targets.items()
            if t.get("val_top1") is not None and t["val_top1"] < TOP1_FLOOR}
    if profile != "smoke" and not weak:
        return []
    why = [f"the `{profile}` profile exercises the code on a few images with tiny models"] if profile == "smoke" else []
    why += [f"`{b}` reaches {fmt(v)}% val top-1 (below {TOP1_FLOOR:g}%)" for b, v in weak.items()]
    return [f"> **Not for conclusions**: {'; '.join(why)}. Its numbers test the pipeline, not the methods.", ""]


def _methods_text(methods: Any) -> str:
    if isinstance(methods, Mapping):  # per family
        return "; ".join(f"{fam}: {', '.join(ms)}" for fam, ms in methods.items())
    return ", ".join(methods)


def _settings(params: Mapping[str, Any]) -> list[str]:
    scan, explain, ev = params.get("scan", {}), params.get("explain", {}), params.get("evaluate", {})
    lime, rise = explain.get("lime", {}), explain.get("rise", {})
    return [
        f"SCAN: alpha = {params.get('alpha')}, inference P = {params.get('p')}, training P ~ "
        f"U[{scan.get('p_train_low')}, {scan.get('p_train_high')}), Adam lr {scan.get('lr')}, "
        f"{scan.get('lr_schedule')} schedule, {scan.get('steps')} steps, batch {scan.get('batch_size')}, "
        f"lambda = {scan.get('lambda_c')}, reconstruction size {scan.get('out_size') or '8 px per feature cell'}, "
        f"layers {scan.get('layers')}",
        f"decoder widths: CNN {scan.get('widths', {}).get('cnn')}, ViT {scan.get('widths', {}).get('vit')} "
        f"({scan.get('vit_blocks')} transformer blocks, {scan.get('vit_heads')} heads)",
        f"LIME: {lime.get('num_samples')} samples (quickshift superpixels, seeded); RISE: N = {rise.get('n_masks')}, "
        f"s = {rise.get('s')}, p1 = {rise.get('p1')}",
        f"perturbation test: fractions {ev.get('fractions')}, inference engine `{ev.get('engine')}`, "
        f"{ev.get('bootstrap')} bootstrap resamples, {ev.get('calibration_maps')} random maps per image for "
        f"calibration",
        "methods: scan; baselines " + _methods_text(explain.get("baselines", [])),
        f"seed: {params.get('seed')}",
    ]


def _decoder_line(backbone: str, layer: str, rec: Mapping[str, Any]) -> str:
    line = (f"decoder `{backbone}/{layer}` (alpha {fmt(rec['alpha'])}): final loss "
            f"{fmt(rec['final_loss'])}, held-out confidence area {fmt(rec['val_confidence_area'])} (target A_c = "
            f"{fmt(rec['target_area'])})")
    if rec.get("val_recon_err") is not None:
        line += (f"; held-out reconstruction MSE {fmt(rec['val_recon_err'])} vs {fmt(rec.get('val_mean_image_err'))} "
                 f"for the mean training image (skill {fmt(rec.get('val_recon_skill'))}: > 0 means the masked "
                 f"features inform the reconstruction), confidence std across images "
                 f"{fmt(rec.get('val_conf_image_std'))}")
    if rec.get("train_confidence_area") is not None:
        line += (f"; on training images: area {fmt(rec['train_confidence_area'])}, reconstruction MSE "
                 f"{fmt(rec.get('train_recon_err'))}")
    return line


def _decoder_images(metrics: Mapping[str, Any]) -> str:
    """The training images the main decoders saw (train_scan's count, per backbone where they differ)."""
    counts = {b: rec.get("n_train") for b, layers in metrics.get("scan_training", {}).items()
              for rec in layers.values()}
    if len(set(counts.values())) == 1:
        return fmt(next(iter(counts.values())))
    return ", ".join(f"{fmt(n)} ({b})" for b, n in counts.items()) or "n/a"


def _pp(v: Any) -> str:
    """Percent points, one decimal (the headline's width)."""
    out = "n/a" if v is None else f"{float(v):.1f}"
    return "0.0" if out == "-0.0" else out


def _with_interval(value: Any, ci: Any) -> str:
    if value is None:
        return "n/a"
    return _pp(value) + (f" [{_pp(ci[0])}, {_pp(ci[1])}]" if ci else "")


def _difference(methods: Mapping[str, Any], method: str | None, reference: str) -> str:
    """AUC-D of `method` minus `reference`'s, with the paired interval explanations.json holds for it."""
    a, r = methods.get(method or "", {}).get("auc_d"), methods.get(reference, {}).get("auc_d")
    if a is None or r is None:
        return "n/a"
    return _with_interval(a - r, methods[method].get(f"auc_d_minus_{reference}_ci95"))


def render_readme(params: Mapping[str, Any], metrics: Mapping[str, Any], tables: Sequence[Table],
                  figures: Sequence["Figure"], reports_dir: str | Path, results_dir: str | Path) -> str:
    """The README of reports_dir, whose metrics/ and tables/ hold the metric files and tables given."""
    base = Path(reports_dir)
    profile = params.get("profile", "unknown")
    expl, targets, cal = (metrics.get(k, {}) for k in ("explanations", "targets", "calibration"))
    lines = [f"# scanbench report (profile: `{profile}`)", "",
             f"Generated by the `report` stage (`python -m scanbench.stages.report`) from this run's results "
             f"(`{Path(results_dir).as_posix()}/`) and `maps/`. Regenerate with `dvc repro`; switch profile with "
             "`python -m scanbench.profile <smoke|default|paper>`.", ""]
    lines += weak_model_warning(profile, targets)
    if expl:
        lines += ["## Headline (fair resolution, percent)", "",
                  "| backbone | images | SCAN AUC-D | centre prior | SCAN - centre | best baseline | best - SCAN | "
                  "random map |",
                  "|---|---|---|---|---|---|---|---|"]
        for b, e in expl.items():
            ms = e["methods"]
            auc_d = {m: v.get("auc_d") for m, v in ms.items()}
            best = best_baseline(auc_d)
            lines.append(f"| {b} | {fmt(e['n_images'])} | "
                         f"{_with_interval(auc_d.get('scan'), ms.get('scan', {}).get('auc_d_ci95'))} | "
                         f"{_with_interval(auc_d.get('centre'), ms.get('centre', {}).get('auc_d_ci95'))} | "
                         f"{_difference(ms, 'scan', 'centre')} | {METHOD_LABELS.get(best, best) or 'n/a'} | "
                         f"{_difference(ms, best, 'scan')} | "
                         f"{_pp(cal.get(b, {}).get('auc_d'))} |")
        lines += ["", "Intervals are 95%: bootstrap over images for an AUC-D, paired bootstrap on the same images "
                  "for a difference (it excludes 0 when the two methods are told apart). The random map's AUC-D is "
                  "the calibration check, the mean over `evaluate.calibration_maps` seeded random maps per image: "
                  "it should be close to 0 (the random method's row in Tables I/II is one such map per image, "
                  "so it differs from this by sampling). The centre prior (one centred Gaussian for "
                  "every image) is what a map scores without looking at the image.", ""]

    lines += ["## Claims", "",
              "[claims.md](claims.md): each claim of the paper this run can test, the paper's figure, ours with its "
              "95% interval and a verdict (supported / contradicted / inconclusive) by the rule stated there; the "
              "verdicts are also in `metrics/summary.json` under `claims` (1 / 0 / -1).", ""]

    families = families_of(params)
    feats, san, tim, abl = (params.get(k, {}) for k in ("features", "sanity", "timing", "ablation"))
    lines += ["## Profile, sizes and settings", "", f"- profile: `{profile}`",
              f"- data root: `{params.get('data', {}).get('root')}`"]
    lines += [f"- backbone `{b}` ({families[b]}): val top-1 {fmt(targets.get(b, {}).get('val_top1'))} on "
              f"{fmt(targets.get(b, {}).get('n_val'))} images; {fmt(expl.get(b, {}).get('n_images'))} evaluation "
              f"images" for b in params.get("backbones", [])]
    lines += [
        f"- sample sizes (params): {params.get('explain', {}).get('n_images')} evaluation images per backbone; "
        f"{_decoder_images(metrics)} training images for the SCAN decoders ({feats.get('n_holdout')} held-out val "
        f"images for the confidence area); {san.get('n_images')} images for sanity checks; "
        f"{tim.get('n_images')} for timing (batch {tim.get('batch_size')}); every ablation setting on the "
        f"evaluation images, paired with its kind's reference setting (alpha / layer / component decoders: "
        f"{abl.get('epochs')} epoch(s) on {abl.get('n_train')} images each, alpha {abl.get('base_alpha')} unless "
        f"varied)"]
    lines += [f"- {s}" for s in _settings(params)]
    lines += [f"- {_decoder_line(b, layer, rec)}" for b, layers in metrics.get("scan_training", {}).items()
              for layer, rec in layers.items()] + [""]

    lines += ["## Tables", "", "Each as Markdown and CSV; `paper_*` columns hold the paper's value for the same "
              "cell, `*_ci95` our 95% bootstrap interval.", ""]
    for t in tables:
        lines.append(f"- [{t.title}](tables/{t.stem}.md) ([csv](tables/{t.stem}.csv))")
        if t.number == "IV":   # Table V depends on the machine: the timing stage writes it, outside DVC's hashes
            lines.append("- [Table V: explanation time per image and the ratio to Grad-CAM](timing/README.md) "
                         "(written by the `timing` stage)")
    lines += ["", "## Figures", ""]
    lines += [f"- [{f.caption}]({_rel(f.path, base)})" for f in figures] or ["- (figures not drawn)"]
    lines += ["", "## Metrics", "",
              "- **Pos / Neg AUC**: top-1 accuracy while removing 0, 10, ..., 90% of the pixels (set to black) "
              "in order of the map, most relevant first (Pos, lower is better) or least relevant first (Neg, "
              "higher is better); trapezoid area x 100. **AUC-D** = Neg AUC - Pos AUC.",
              "- **Fair resolution**: each map is average-pooled to the backbone's grid and bilinearly upsampled "
              "before the test (the paper does this for SCAN and LIME); we do it for every method and also "
              "report the full-resolution AUC-D (`auc_d_full`).",
              f"- {per_image_definition()}",
              f"- {WIN_DEFINITION}", ""]
    lines += ["Metric files (DVC `metrics:`): " + ", ".join(f"[{s}.json](metrics/{s}.json)" for s in metrics), ""]

    from .compare import EXCLUDED_FILES

    lines += ["## CI comparison", "",
              "`python -m scanbench.stages.compare_metrics --reference reports/reference/smoke "
              "--current reports/metrics` "
              "compares every metric file except " + ", ".join(f"`{f}.json`" for f in EXCLUDED_FILES) +
              " (machine-dependent) with the committed smoke reference, prints the differences as a Markdown "
              "table and exits 1 when a value moves beyond its absolute tolerance or a metric appears or "
              "disappears. The tolerances are the reference's own, with the reasons for each, in "
              "`reports/reference/smoke/reference.yaml` (`--abs-tol` / `--tol PATTERN=VALUE` override them).", ""]
    fitted = [b for b in params.get("backbones", []) if _fitted_head(results_dir, b)]
    lines += ["## Deviations from the paper", ""] + [f"- {d}" for d in deviations(params, fitted)] + [""]
    return "\n".join(lines)
