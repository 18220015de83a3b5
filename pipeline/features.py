"""Stage `features` (per backbone x layer): the layer's features F and gradients G = dlogit_c/dF for the
decoder-training images (train split) and a held-out set (val split, disjoint from evaluation)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402

import torch  # noqa: E402

from scanbench.backbones import get_backbone, load_target  # noqa: E402
from scanbench.config import data_root, load_params, seed_everything  # noqa: E402
from scanbench.data import holdout_indices, load_manifest, scan_train_indices  # noqa: E402
from scanbench.features import extract_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--layer", default="default", help="layer alias (default|alt1|alt2) or module path")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--out", default=None, help="default: features/<backbone>/<layer>")
    args = ap.parse_args()
    params = load_params(args.params)
    seed_everything(params["seed"])
    spec = get_backbone(args.backbone)
    layer = spec.resolve_layer(args.layer)
    manifest = load_manifest(args.manifest)
    model = load_target(spec.name, f"models/targets/{spec.name}/model.pt")
    out = Path(args.out or f"features/{spec.name}/{args.layer}")
    root = data_root(params)
    train_idx = scan_train_indices(manifest, params)
    if args.layer not in params["scan"]["layers"]:
        # only the layer ablation reads this layer, and its decoders train on the first ablation.n_train rows
        train_idx = train_idx[: params["ablation"]["n_train"]]
    for subset, idx in (("train", train_idx), ("holdout", holdout_indices(manifest, params))):
        rows = manifest.iloc[idx]
        path = extract_features(model, layer, root, rows["path"].tolist(), rows["label"].tolist(), spec.input_size,
                                out / subset, batch_size=params["features"]["batch_size"], indices=idx.tolist(),
                                extra_meta={"backbone": spec.name, "layer_alias": args.layer, "subset": subset})
        print(f"{spec.name} {layer} {subset}: {len(idx)} images -> {path}")


if __name__ == "__main__":
    torch.set_num_threads(2)
    run_stage(main)
