"""Stage `ablate_*` (Tables VI-IX), one run per backbone and kind sweeping that kind's settings (one process,
one model and image load). alpha / layer / components: each setting's decoder trained on `ablation.n_train`
feature images (`--setting` runs one setting alone); P: every `ablation.percentiles` entry, all re-using the main
decoder. Each setting is explained and evaluated on the evaluation images of Tables I/II (explain.n_images) and
written as <out-dir>/<setting>.json plus example maps .npz; the JSON keeps its per-image scores (`per_image`: the
manifest rows, the fair variant's AUC-D, and each per-image metric of scanbench.per_image_metrics), from which the
report takes each row's paired difference to the kind's reference setting (config.ablation_reference)."""
from __future__ import annotations

import tempfile
from pathlib import Path

from scanbench.config import ABLATION_PARAM, check_percentile, seed_everything, setting_name
from scanbench.errors import ScanbenchError
from scanbench.features import load_features
from scanbench.io import save_npz, write_json
from scanbench.per_image_metrics import PER_IMAGE_NAMES
from scanbench.scan.train import save_decoder, scan_decoder_path, train_decoder
from scanbench.scan_scoring import ScanScorer
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser

N_EXAMPLE_MAPS = 4


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--kind", required=True, choices=list(ABLATION_PARAM))
    ap.add_argument("--setting", help="run this one setting (alpha, layer, components) instead of every "
                                      "ablation.<alphas|layers|components> entry; P always sweeps")
    ap.add_argument("--out-dir", required=True, type=Path, help="<setting>.json and <setting>.npz go here")
    args = ap.parse_args(argv)
    if args.kind == "p" and args.setting is not None:
        raise ScanbenchError("the P ablation takes no --setting: it sweeps ablation.percentiles")
    params = load_stage_params(args)
    device = compute_device(params)
    seed_everything(params["seed"])
    abl = params["ablation"]
    scorer = ScanScorer(args.backbone, params, args.manifest, device=device)   # every evaluation image
    spec = scorer.spec

    def run_setting(setting: str, decoder_path: Path, alpha: float, layer: str, variant: str, p: float,
                    summary: dict) -> None:
        maps, result = scorer.score(decoder_path, p)
        fair = result["variants"]["fair"]
        out = {"backbone": spec.name, "kind": args.kind, "setting": setting, "alpha": alpha, "layer": layer,
               "variant": variant, "p": p, "n_images": int(len(scorer.indices)),
               "pos_auc": fair["pos_auc"], "neg_auc": fair["neg_auc"], "auc_d": fair["auc_d"],
               "auc_d_ci": fair["auc_d_ci"],
               "full": {k: result["variants"]["full"][k] for k in ("pos_auc", "neg_auc", "auc_d")},
               **{k: result[k] for k in PER_IMAGE_NAMES},
               "val_confidence_area": summary.get("val_confidence_area"), "target_area": summary.get("target_area"),
               "per_image": {"index": [int(i) for i in scorer.indices], "auc_d": fair["per_image_auc_d"],
                             **{k: result["per_image"][k] for k in PER_IMAGE_NAMES}}}
        save_npz(args.out_dir / f"{setting}.npz", **scorer.example_maps(maps, N_EXAMPLE_MAPS))
        write_json(args.out_dir / f"{setting}.json", out)
        print(f"{spec.name} {args.kind}={setting}: AUC-D {fair['auc_d']:.2f} (neg {fair['neg_auc']:.2f}, "
              f"pos {fair['pos_auc']:.2f}) on {len(scorer.indices)} images")

    if args.kind == "p":   # the main decoder: trained with the top-level alpha on the default layer
        for value in abl["percentiles"]:
            p = check_percentile(float(value), "ablation.percentiles")
            run_setting(setting_name(value), scan_decoder_path(spec.name), float(params["alpha"]),
                        "default", "full", p, {})
        return
    base_alpha, p_infer = float(abl["base_alpha"]), float(params["p"])
    for value in [args.setting] if args.setting is not None else abl[ABLATION_PARAM[args.kind]]:
        setting = setting_name(value)
        alpha, layer, variant = base_alpha, "default", "full"
        if args.kind == "alpha":
            alpha = float(value)
        elif args.kind == "layer":
            layer = setting
            spec.resolve_layer(layer)
        else:
            variant = setting
        feats = Path(f"features/{spec.name}/{layer}")
        decoder, _, summary = train_decoder(load_features(feats / "train"), load_features(feats / "holdout"),
                                            spec, params, alpha, variant=variant, epochs=abl["epochs"],
                                            n_train=abl["n_train"], seed=params["seed"], device=device)
        with tempfile.TemporaryDirectory() as tmp:
            decoder_path = Path(tmp) / "decoder.pt"
            save_decoder(decoder_path, decoder, summary)
            run_setting(setting, decoder_path, alpha, layer, variant, p_infer, summary)


if __name__ == "__main__":
    run_stage(main)
