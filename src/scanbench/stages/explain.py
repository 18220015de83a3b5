"""Stage `explain`: saliency maps of one method for one backbone's evaluation images.

    python pipeline/explain.py --backbone B --method M --out maps/B/M.npz

The explained class is the model's prediction. Writes maps (float16 N x H x W in [0, 1]), indices
(manifest rows), labels, classes, seconds_per_image and, for SCAN, recon (the first 8 reconstructions).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import log_fact, run_stage  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from scanbench.backbones import get_backbone, load_target  # noqa: E402
from scanbench.compute import resolve  # noqa: E402
from scanbench.config import data_root, load_params  # noqa: E402
from scanbench.data import eval_indices, load_images, load_manifest  # noqa: E402
from scanbench.distributed import (destroy_process_group, gather_to_rank0, init_process_group,  # noqa: E402
                                   relaunch_under_torchrun, shard)
from scanbench.engine import ForwardEngine  # noqa: E402
from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.explainers.base import check_method  # noqa: E402
from scanbench.explainers.factory import explainer_from_params  # noqa: E402
from scanbench.io import save_npz  # noqa: E402
from scanbench.scan.train import scan_decoder_path  # noqa: E402

N_RECON = 8
FORWARD_ONLY = ("lime", "rise")   # these only need logits: served by the forward engine (ONNX by default)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--targets", default="models/targets", type=Path, help="folder of <backbone>/model.{pt,onnx}")
    ap.add_argument("--decoders", default="models/scan", type=Path,
                    help="folder of <backbone>/default/decoder.pt (SCAN only)")
    args = ap.parse_args()
    params = load_params(args.params)
    relaunch_under_torchrun(params)   # compute.nproc > 1: this script again, under torchrun (then exits here)
    device = resolve(params)
    spec = get_backbone(args.backbone)
    check_method(args.method, spec.family)   # fail before loading anything

    decoder = scan_decoder_path(args.backbone, args.decoders)
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
