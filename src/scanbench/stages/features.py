"""Stage `features` (per backbone): for each layer SCAN needs, its features F and gradients G = dlogit_c/dF for
the decoder-training images (train split) and a held-out set (val split, disjoint from evaluation).

The layers: `scan.layers`, plus `ablation.layers` when the backbone is in `ablation.backbones` (one process per
backbone, so the model loads once; the layer ablation's extra layers cost nothing where it does not run)."""
from __future__ import annotations

from pathlib import Path

from scanbench.backbones import get_backbone, load_target
from scanbench.config import data_root, seed_everything
from scanbench.data import holdout_indices, load_manifest, scan_train_indices
from scanbench.distributed import destroy_process_group, init_process_group
from scanbench.feature_extraction import extract_features
from scanbench.features import feature_layers, training_rows
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--layer", action="append", dest="layers",
                    help="layer alias (default|alt1|alt2) or module path; repeat for several "
                         "(default: the layers the params need, see above)")
    ap.add_argument("--out", default=None, type=Path, help="<out>/<layer> per layer (default: features/<backbone>)")
    args = ap.parse_args(argv)
    params = load_stage_params(args, data_parallel=True)   # compute.nproc > 1: re-run under torchrun, then exit
    device = compute_device(params)
    seed_everything(params["seed"])
    spec = get_backbone(args.backbone)
    layers = args.layers or feature_layers(spec.name, params)
    modules = {alias: spec.resolve_layer(alias) for alias in layers}   # unknown layers fail before any work
    manifest = load_manifest(args.manifest)
    holdout_idx = holdout_indices(manifest, params)   # image counts that do not fit the val split fail before any work
    model = load_target(spec.name, f"models/targets/{spec.name}/model.pt", device=device)
    out = args.out or Path(f"features/{spec.name}")
    root = data_root(params)
    ctx = init_process_group(device)   # each rank extracts its block of the images; rank 0 writes
    for alias, layer in modules.items():
        train_idx = scan_train_indices(manifest, params)
        if alias not in params["scan"]["layers"]:
            # only the layer ablation reads this layer, and its decoders train on the first ablation.n_train rows
            train_idx = train_idx[training_rows(len(train_idx), params["ablation"]["n_train"], params["seed"])]
        for subset, idx in (("train", train_idx), ("holdout", holdout_idx)):
            rows = manifest.iloc[idx]
            path = extract_features(model, layer, root, rows["path"].tolist(), rows["label"].tolist(),
                                    spec.input_size, out / alias / subset,
                                    batch_size=params["features"]["batch_size"], indices=idx.tolist(),
                                    extra_meta={"backbone": spec.name, "layer_alias": alias, "subset": subset},
                                    out_size=params["scan"].get("out_size"), grid=spec.grid, ctx=ctx)
            if ctx.is_main:
                print(f"{spec.name} {layer} {subset}: {len(idx)} images -> {path}")
    destroy_process_group(ctx)


if __name__ == "__main__":
    run_stage(main)
