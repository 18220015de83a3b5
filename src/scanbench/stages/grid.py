"""Stage `grid`: the grid pointing game of one method on one backbone's mosaics.

    python -m scanbench.stages.grid --backbone B --method M --mosaics data/mosaics/B.npz
        --out results/<profile>/grid/B/M.json --maps-out maps/grid/B/M.npz

Each mosaic (the `mosaics` stage's rows, tiles loaded at half the input size) is explained four times, once for
each tile's class; the method is built as the explain stage builds it (scanbench.explainers.factory). Writes
share and pointing (means over the mosaics, bootstrap intervals over mosaics), in_top4 and the per-tile scores
(scanbench.grid_pointing.grid_record) as JSON, and the maps of the first mosaics (float16 n x 4 x S x S, with
their rows and classes) for the report's figure. Seconds per mosaic are a run fact (logs/run_facts.json).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from scanbench.backbones import get_backbone, load_target
from scanbench.config import data_root
from scanbench.data import load_manifest
from scanbench.engine import ForwardEngine
from scanbench.errors import ScanbenchError
from scanbench.explainers.base import check_method, registered_methods
from scanbench.explainers.factory import explainer_from_params
from scanbench.grid_pointing import (
    N_EXAMPLES,
    N_TILES,
    check_mosaics,
    check_side,
    grid_record,
    load_mosaics,
    score_with_examples,
)
from scanbench.io import load_npz, save_npz, write_json
from scanbench.scan.train import scan_decoder_path
from scanbench.stages._cli import compute_device, load_stage_params, log_fact, run_stage, stage_parser

FORWARD_ONLY = [m for m, c in registered_methods().items() if c.forward_only]   # only logits: the engine serves them


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, targets=True, scan_models=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--mosaics", required=True, type=Path, help="the `mosaics` stage's file for this backbone")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--maps-out", required=True, type=Path, help="the first mosaics' maps, for the report")
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    device = compute_device(params)
    spec = get_backbone(args.backbone)
    check_method(args.method, spec.family)   # fail before loading anything
    size = check_side(spec.input_size)
    decoder = scan_decoder_path(args.backbone, args.scan_models)
    if args.method == "scan" and not decoder.exists():
        raise ScanbenchError(f"SCAN decoder {decoder} not found: run `dvc repro train_scan` first")
    manifest = load_manifest(args.manifest)
    rows, classes = check_mosaics(load_npz(args.mosaics, stage="mosaics"), manifest, args.mosaics)
    images = load_mosaics(data_root(params), manifest, rows, size)
    model = load_target(args.backbone, args.targets / args.backbone / "model.pt", device=device)
    engine = None
    if args.method in FORWARD_ONLY:
        engine = ForwardEngine(model, params["evaluate"]["engine"], args.targets / args.backbone / "model.onnx",
                               batch_size=params["evaluate"]["batch_size"], device=device)
    explainer = explainer_from_params(args.method, model, spec, params, engine=engine, decoder_path=decoder)

    batch = max(1, int(params["explain"]["batch_size"]) // N_TILES)   # mosaics per call: 4 maps each
    start = time.perf_counter()
    scores, examples = score_with_examples(model, explainer.explain, images, classes, batch)
    seconds_per_mosaic = (time.perf_counter() - start) / len(rows)   # a run fact: logged, not stored
    record = grid_record(scores, int(params["evaluate"]["bootstrap"]), int(params["seed"]))
    write_json(args.out, {"backbone": args.backbone, "method": args.method, "family": spec.family, "size": size,
                          **record, "mosaics": rows.tolist()})
    k = len(examples)
    save_npz(args.maps_out, maps=examples, rows=rows[:k], classes=classes[:k].astype(np.int64))
    log_fact(seconds_per_mosaic=round(seconds_per_mosaic, 4))
    print(f"{args.backbone}/{args.method}: grid share {record['share']:.3f}, pointing {record['pointing']:.3f} on "
          f"{len(rows)} mosaics ({N_EXAMPLES} kept), {seconds_per_mosaic:.3f} s/mosaic -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
