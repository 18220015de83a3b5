"""Stage `scaling` (per backbone): where SCAN is heading as its training data grows. One decoder per
`scaling.n_train` entry (a nested seeded subset of the training features; null: all), each trained for the same
`scaling.steps` steps, then measured on the held-out images (reconstruction skill, confidence area) and on the
first `scaling.n_images` evaluation images (AUC-D; null: all). Writes one JSON with a row per size.

    python pipeline/scaling.py --backbone B --out results/<profile>/scaling/B.json
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402
from _scan_eval import ScanScorer  # noqa: E402

from scanbench.compute import resolve  # noqa: E402
from scanbench.config import check_percentile, load_params, seed_everything  # noqa: E402
from scanbench.diagnostics import decoder_generalisation  # noqa: E402
from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.features import load_features  # noqa: E402
from scanbench.io import write_json  # noqa: E402
from scanbench.scan.train import save_decoder, train_decoder  # noqa: E402


def sizes(values: list, n_total: int) -> list[int]:
    """scaling.n_train entries as image counts (null: all), each in [1, n_total], ascending, no repeats."""
    out = []
    for v in values:
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ScanbenchError(f"scaling.n_train entries must be positive integers or null (got {v!r})")
        out.append(n_total if v is None else min(v, n_total))
    if not out:
        raise ScanbenchError("scaling.n_train is empty: give at least one size")
    return sorted(set(out))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    ap.add_argument("--manifest", default="data/manifest.csv")
    args = ap.parse_args(argv)
    params = load_params(args.params)
    device = resolve(params)
    cfg = params["scaling"]
    p = check_percentile(params["p"], "p")
    feats = Path("features") / args.backbone / "default"
    train_set, holdout_set = load_features(feats / "train"), load_features(feats / "holdout")
    counts = sizes(list(cfg["n_train"]), len(train_set))
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
