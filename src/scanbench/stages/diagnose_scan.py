"""Stage diagnose_scan: held-out generalisation checks of a trained SCAN decoder (scanbench.diagnostics).

    python -m scanbench.stages.diagnose_scan --backbone B [--layer default] --out results/diagnostics/B.json
"""
from __future__ import annotations

from pathlib import Path

from scanbench.backbones import get_backbone
from scanbench.config import check_percentile
from scanbench.diagnostics import decoder_generalisation
from scanbench.features import load_features
from scanbench.io import write_json
from scanbench.scan.train import load_decoder, scan_decoder_path
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, manifest=False)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--layer", default="default")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    device = compute_device(params)
    spec = get_backbone(args.backbone)
    layer_path = spec.resolve_layer(args.layer)
    p = check_percentile(params["p"], "p")
    feat_dir = Path("features") / args.backbone / args.layer
    train_set, holdout_set = load_features(feat_dir / "train"), load_features(feat_dir / "holdout")
    decoder, meta = load_decoder(scan_decoder_path(args.backbone, layer=args.layer), spec.name,
                                 expected_layer=layer_path, device=device)
    result = decoder_generalisation(decoder, train_set, holdout_set, p, variant=meta.get("variant", "full"))
    write_json(args.out, {"backbone": spec.name, "layer": args.layer, **result})
    print(f"{spec.name}/{args.layer}: held-out recon MSE {result['recon_err']:.4f} vs mean-image "
          f"{result['mean_image_err']:.4f} (skill {result['recon_skill']:+.3f}); confidence area "
          f"{result['conf_area']:.3f}, std across images {result['conf_image_std']:.3f}")


if __name__ == "__main__":
    run_stage(main)
