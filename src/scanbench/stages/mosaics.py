"""Stage `mosaics`: the grid pointing game's mosaics for one backbone.

    python -m scanbench.stages.mosaics --backbone B --out data/mosaics/B.npz

The candidate images (val images outside the evaluation and held-out sets; a seeded grid.n_candidates of them)
are classified alone at the backbone's input size by the forward engine (evaluate.engine); with
grid.correct_only, only those the model classifies correctly (softmax >= grid.min_confidence) enter a mosaic.
Writes rows and classes (n x 4: the tiles' manifest rows and labels, row-major), candidates and correct
(scanbench.grid_pointing.choose_mosaics). The mosaic side is the input size (tiles at half of it).
"""
from __future__ import annotations

from pathlib import Path

from scanbench.backbones import get_backbone
from scanbench.config import data_root
from scanbench.data import load_manifest
from scanbench.engine import target_engine
from scanbench.grid_pointing import check_side, choose_mosaics, classify_rows
from scanbench.io import save_npz
from scanbench.stages._cli import compute_device, load_stage_params, log_fact, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, targets=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    device = compute_device(params)
    spec = get_backbone(args.backbone)
    size = check_side(spec.input_size)   # before loading anything
    manifest = load_manifest(args.manifest)
    root = data_root(params)
    ev = params["evaluate"]
    engine = target_engine(args.backbone, args.targets, ev["engine"], batch_size=ev["batch_size"], device=device)
    out = choose_mosaics(manifest, params, lambda rows: classify_rows(engine, root, manifest, rows, size,
                                                                      ev["batch_size"]))
    save_npz(args.out, **out)
    log_fact(n_candidates=int(len(out["candidates"])), n_correct=int(out["correct"].sum()))
    print(f"{args.backbone}: {len(out['rows'])} mosaics of {size} px from {len(out['candidates'])} candidate images "
          f"({int(out['correct'].sum())} correct alone) -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
