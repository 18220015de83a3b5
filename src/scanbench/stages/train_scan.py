"""Stage train_scan: train one SCAN decoder on cached features (docs/METHODS.md §1).

    python -m scanbench.stages.train_scan --backbone B --layer L [--alpha A] [--variant V] [--steps S]
                                          [--n-train N] [--features DIR] [--params params.yaml] --out DIR
                                          [--results DIR2]

Reads features/B/L/{train,holdout} (or --features DIR/{train,holdout}); writes DIR/decoder.pt, and summary.json
and curves.csv (a row every few optimiser steps, scanbench.scan.train.curve_every) into DIR2 (default: DIR).
Defaults come from params.yaml's scan section.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from scanbench.backbones import get_backbone
from scanbench.distributed import destroy_process_group, init_process_group
from scanbench.errors import ScanbenchError
from scanbench.features import load_features
from scanbench.io import write_json, write_text
from scanbench.scan.loss import VARIANTS
from scanbench.scan.train import save_decoder, train_decoder
from scanbench.stages._cli import compute_device, load_stage_params, log_fact, run_stage, stage_parser


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = stage_parser(__doc__, manifest=False)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--layer", required=True, help="layer alias (default|alt1|alt2) or module path")
    ap.add_argument("--alpha", type=float, default=None, help="default: params alpha (top-level)")
    ap.add_argument("--variant", default="full", choices=VARIANTS)
    ap.add_argument("--steps", type=int, default=None, help="optimiser steps (default: params scan.steps)")
    ap.add_argument("--n-train", type=int, default=None, help="default: every image in the train feature set")
    ap.add_argument("--features", type=Path, default=None, help="folder holding train/ and holdout/ "
                    "(default: features/<backbone>/<layer>)")
    ap.add_argument("--out", type=Path, required=True, help="folder for decoder.pt")
    ap.add_argument("--results", type=Path, default=None, help="folder for summary.json and curves.csv "
                    "(default: --out)")
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = load_stage_params(args, data_parallel=True)   # compute.nproc > 1: re-run under torchrun, then exit
    device = compute_device(params)
    spec = get_backbone(args.backbone)
    alpha = params["alpha"] if args.alpha is None else args.alpha
    if alpha <= 0:
        raise ScanbenchError(f"--alpha must be > 0 (got {alpha})")
    spec.resolve_layer(args.layer)   # fail early on an unknown layer
    feat_dir = args.features or Path("features") / args.backbone / args.layer
    train_set = load_features(feat_dir / "train")
    holdout_set = load_features(feat_dir / "holdout")
    ctx = init_process_group(device)   # DistributedDataParallel over torchrun's ranks (one process: plain)
    start = time.perf_counter()
    decoder, curves, summary = train_decoder(train_set, holdout_set, spec, params, alpha, variant=args.variant,
                                             steps=args.steps, n_train=args.n_train,
                                             seed=int(params.get("seed", 0)), progress=not args.no_progress,
                                             device=device, ctx=ctx)
    train_seconds = time.perf_counter() - start
    if not ctx.is_main:   # rank 0 writes
        destroy_process_group(ctx)
        return
    log_fact(train_seconds=round(train_seconds, 1))
    save_decoder(args.out / "decoder.pt", decoder, summary)
    results = args.results or args.out
    write_json(results / "summary.json", summary)
    write_text(results / "curves.csv", pd.DataFrame(curves).to_csv(index=False))
    destroy_process_group(ctx)
    area = summary["val_confidence_area"]
    print(f"{args.backbone}/{args.layer} alpha={alpha} variant={args.variant}: final loss "
          f"{summary['final_loss']:.4f}, held-out confidence area "
          f"{'n/a' if area is None else f'{area:.3f}'} (target {summary['target_area']:.3f}), "
          f"{train_seconds:.0f} s")


if __name__ == "__main__":
    run_stage(main)   # ScanbenchError -> "error: ..." on stderr, exit 2
