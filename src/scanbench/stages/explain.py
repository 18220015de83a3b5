"""Stage `explain`: saliency maps of one method for one backbone's evaluation images.

    python -m scanbench.stages.explain --backbone B --method M --out maps/B/M.npz

The explained class is the model's prediction. Writes maps (float16 N x H x W in [0, 1]), indices
(manifest rows), labels, classes and, for SCAN, recon (the first 8 reconstructions); the seconds per image
are a run fact (logs/run_facts.json).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from scanbench.backbones import get_backbone, load_target
from scanbench.config import data_root
from scanbench.data import eval_indices, load_images, load_manifest
from scanbench.distributed import destroy_process_group, gather_to_rank0, init_process_group, shard
from scanbench.engine import ForwardEngine
from scanbench.errors import ScanbenchError
from scanbench.explainers.base import check_method, registered_methods
from scanbench.explainers.factory import explainer_from_params
from scanbench.io import save_npz
from scanbench.scan.train import scan_decoder_path
from scanbench.stages._cli import compute_device, load_stage_params, log_fact, run_stage, stage_parser

N_RECON = 8
FORWARD_ONLY = [m for m, c in registered_methods().items() if c.forward_only]   # only logits: the engine serves them


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, targets=True, scan_models=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--out", required=True, type=Path)
    args = ap.parse_args(argv)
    params = load_stage_params(args, data_parallel=True)   # compute.nproc > 1: re-run under torchrun, then exit
    device = compute_device(params)
    spec = get_backbone(args.backbone)
    check_method(args.method, spec.family)   # fail before loading anything

    decoder = scan_decoder_path(args.backbone, args.scan_models)
    if args.method == "scan" and not decoder.exists():
        raise ScanbenchError(f"SCAN decoder {decoder} not found: run `dvc repro train_scan` first")
    manifest = load_manifest(args.manifest)
    idx = eval_indices(manifest, params)
    labels = manifest["label"].to_numpy()[idx]
    bs = int(params["explain"]["batch_size"])
    ctx = init_process_group(device)
    # this rank's block of the images (maps are per image; the random method's stream skips the earlier blocks)
    rows = shard(len(idx), ctx)
    paths = manifest["path"].to_numpy()[idx]
    images = load_images(data_root(params), paths[rows.start:rows.stop], spec.input_size)
    model = load_target(args.backbone, args.targets / args.backbone / "model.pt", device=device)

    with torch.no_grad():   # not inference_mode: these classes index logits under autograd later
        classes = torch.cat([model(images[i:i + bs].to(device)).argmax(1).cpu() for i in range(0, len(images), bs)]
                            or [torch.zeros(0, dtype=torch.long)])   # an empty shard: more ranks than images
    engine = None
    if args.method in FORWARD_ONLY:
        engine = ForwardEngine(model, params["evaluate"]["engine"], args.targets / args.backbone / "model.onnx",
                               batch_size=params["evaluate"]["batch_size"], device=device)
    explainer = explainer_from_params(args.method, model, spec, params, engine=engine, decoder_path=decoder)
    explainer.skip(rows.start, spec.input_size, spec.input_size)   # random streams: past the earlier shards

    maps, seconds = [], 0.0
    for i in tqdm(range(0, len(images), bs), desc=f"{args.backbone}/{args.method}", unit="batch"):
        start = time.perf_counter()
        maps.append(explainer.explain(images[i:i + bs], classes[i:i + bs]))
        seconds += time.perf_counter() - start
    part = (torch.cat(maps).cpu().numpy().astype(np.float16) if maps else
            np.zeros((0, spec.input_size, spec.input_size), np.float16), classes.cpu().numpy().astype(np.int64))
    parts = gather_to_rank0(part, ctx)
    if not ctx.is_main:   # rank 0 writes
        destroy_process_group(ctx)
        return

    out = {"maps": np.concatenate([p[0] for p in parts]), "indices": idx.astype(np.int64),
           "labels": labels.astype(np.int64), "classes": np.concatenate([p[1] for p in parts])}
    seconds_per_image = seconds / max(len(images), 1)   # a run fact (rank 0's shard): logged, not stored
    log_fact(seconds_per_image=round(seconds_per_image, 4), nproc=ctx.world)
    if args.method == "scan":
        first = images[:N_RECON]
        if len(first) < min(N_RECON, len(idx)):   # rank 0's shard is shorter than the reconstructions shown
            first = load_images(data_root(params), paths[:N_RECON], spec.input_size)
        _, recon = explainer.explain_with_reconstruction(first, torch.from_numpy(out["classes"][:N_RECON]))
        out["recon"] = recon.cpu().numpy().astype(np.float16)
    save_npz(args.out, **out)
    destroy_process_group(ctx)
    print(f"{args.backbone}/{args.method}: {len(idx)} maps, {seconds_per_image:.3f} s/image -> {args.out}")


if __name__ == "__main__":
    run_stage(main)
