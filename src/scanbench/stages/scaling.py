"""Stage `scaling` (per backbone): where SCAN is heading as its training data grows. One decoder per
`scaling.n_train` entry (a nested seeded subset of the training features; null: all), each trained for the same
`scaling.steps` steps, then measured on the held-out images (reconstruction skill, confidence area) and on the
first `scaling.n_images` evaluation images (AUC-D; null: all). Writes one JSON with a row per size.

    python -m scanbench.stages.scaling --backbone B --out results/<profile>/scaling/B.json
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from scanbench.config import check_percentile, seed_everything
from scanbench.diagnostics import decoder_generalisation
from scanbench.features import load_features, training_sizes
from scanbench.io import write_json
from scanbench.scan.train import save_decoder, train_decoder
from scanbench.scan_scoring import ScanScorer
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    device = compute_device(params)
    cfg = params["scaling"]
    p = check_percentile(params["p"], "p")
    feats = Path("features") / args.backbone / "default"
    train_set, holdout_set = load_features(feats / "train"), load_features(feats / "holdout")
    counts = training_sizes(list(cfg["n_train"]), len(train_set))
    seed_everything(params["seed"])
    scorer = ScanScorer(args.backbone, params, args.manifest, cfg.get("n_images"), device=device)
    rows = []
    for n in counts:
        decoder, _, summary = train_decoder(train_set, holdout_set, scorer.spec, params, float(params["alpha"]),
                                            steps=int(cfg["steps"]), n_train=n, seed=params["seed"], device=device)
        held_out = decoder_generalisation(decoder, train_set, holdout_set, p)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "decoder.pt"
            save_decoder(path, decoder, summary)
            _, result = scorer.score(path, p)
        fair = result["variants"]["fair"]
        rows.append({"n_train": n, "steps": summary["steps"], "epochs": summary["epochs"],
                     "recon_skill": held_out["recon_skill"], "conf_area": held_out["conf_area"],
                     "conf_image_std": held_out["conf_image_std"], "train_recon_err": held_out["train_recon_err"],
                     "recon_err": held_out["recon_err"], "auc_d": fair["auc_d"], "auc_d_ci": fair["auc_d_ci"],
                     "pos_auc": fair["pos_auc"], "neg_auc": fair["neg_auc"]})
        print(f"{args.backbone} n_train={n}: held-out skill {held_out['recon_skill']:+.3f}, area "
              f"{held_out['conf_area']:.3f}, AUC-D {fair['auc_d']:.2f} on {len(scorer.indices)} images", flush=True)
    write_json(args.out, {"backbone": args.backbone, "alpha": float(params["alpha"]), "p": p,
                          "n_images": int(len(scorer.indices)), "n_holdout": len(holdout_set), "rows": rows})


if __name__ == "__main__":
    run_stage(main)
