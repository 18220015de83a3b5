"""Stage `evaluate`: perturbation AUCs (fair and full resolution), Drop/Inc, bootstrap intervals and,
for the random method, the ten-random-maps calibration, for one backbone and method.

Per-image values (for paired comparisons and Win% in the report): `per_image` holds `index` (manifest rows, the
images' identity), `drop` and `inc`; `variants.<fair|full>.per_image_auc_d` each image's AUC-D, in that order.

When data/boxes.csv (the `boxes` stage) holds boxes, `localisation` adds the energy inside the boxes and the pointing
game of the maps as given (input resolution), with bootstrap intervals, over the evaluation images that have boxes
(scanbench.metrics.localisation), and `localisation.matched_prior`: the centre prior's map as concentrated as
these maps, scored on the same images, and the method minus it with paired intervals
(scanbench.metrics.matched_prior); without boxes the JSON has no `localisation` key."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from scanbench.backbones import get_backbone
from scanbench.boxes import load_checked_boxes
from scanbench.config import data_root
from scanbench.data import load_images, load_manifest
from scanbench.distributed import destroy_process_group, gather_to_rank0, init_process_group, shard
from scanbench.engine import target_engine
from scanbench.io import write_json
from scanbench.maps import box_localisation, check_rows, check_shape, explain_stage, load_maps
from scanbench.metrics import concat_scores, per_image_scores, summarize_scores, throughput
from scanbench.stages._cli import compute_device, load_stage_params, log_fact, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, targets=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--maps", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--boxes", default="data/boxes.csv", type=Path, help="the `boxes` stage's checked boxes")
    args = ap.parse_args(argv)
    params = load_stage_params(args, data_parallel=True)   # compute.nproc > 1: re-run under torchrun, then exit
    device = compute_device(params)
    ev = params["evaluate"]
    spec = get_backbone(args.backbone)
    manifest = load_manifest(args.manifest)
    z = load_maps(args.maps, explain_stage(spec.name, spec.family, args.method))
    labels = check_rows(z, manifest, args.maps, args.manifest)
    boxes = load_checked_boxes(args.boxes)   # before the long part: a missing file fails at once
    # ONNX Runtime on the CPU (or its CUDA provider); without that provider on a GPU, the PyTorch engine there
    check_shape(z, spec.input_size, args.maps)
    n = len(z["indices"])
    ctx = init_process_group(device)
    rows = shard(n, ctx)   # all of them in one process; per-image scores, so any split gives the same numbers
    engine = target_engine(args.backbone, args.targets, ev["engine"], batch_size=ev["batch_size"], device=device)
    images = load_images(data_root(params), manifest["path"].to_numpy()[z["indices"][rows.start:rows.stop]],
                         spec.input_size)
    if engine.kind == "torch":   # the perturbed copies are built where the model runs
        images = images.to(engine.device)
    maps = torch.from_numpy(z["maps"][rows.start:rows.stop].astype(np.float32))
    scores = per_image_scores(engine, images, maps, torch.from_numpy(labels[rows.start:rows.stop]),
                              torch.from_numpy(z["classes"][rows.start:rows.stop]), grid=spec.grid,
                              fractions=ev["fractions"], seed=params["seed"],
                              calibration_maps=ev["calibration_maps"] if args.method == "random" else None,
                              rows=rows, n_total=n)
    parts = gather_to_rank0(scores, ctx)
    if not ctx.is_main:   # rank 0 writes
        destroy_process_group(ctx)
        return
    tp = throughput(engine, images, len(ev["fractions"]), scores["seconds"])   # run facts (rank 0's shard)
    # the bootstrap intervals: on rank 0, over every image's scores
    result = summarize_scores(concat_scores(parts), ev["fractions"], ev["bootstrap"], params["seed"])
    log_fact(**tp, nproc=ctx.world)
    # per_image.index: each image's manifest row, so that the report pairs methods image by image
    result["per_image"] = {"index": z["indices"].astype(int).tolist(), **result["per_image"]}
    loc = box_localisation(boxes, manifest["path"].astype(str).to_numpy()[z["indices"]].tolist(), z["indices"],
                           z["maps"], spec.input_size, ev["bootstrap"], params["seed"])
    if loc is not None:   # only with boxes: without them the JSON has no `localisation` key
        result["localisation"] = loc
    write_json(args.out, {"backbone": args.backbone, "method": args.method, "family": spec.family, **result})
    destroy_process_group(ctx)
    fair = result["variants"]["fair"]
    print(f"{args.backbone}/{args.method}: AUC-D {fair['auc_d']:.2f} (neg {fair['neg_auc']:.2f}, pos "
          f"{fair['pos_auc']:.2f}), drop {result['drop']:.1f}%, inc {result['inc']:.1f}% on {n} images")
    print(f"throughput ({ev['engine']}): perturbation {tp['perturbation_img_steps_per_s']:.1f} image-steps/s, "
          f"plain forward {tp['forward_img_per_s']:.1f} images/s")
    if loc and loc["n_images"]:
        print(f"localisation on {loc['n_images']} boxed images ({loc['n_skipped']} without boxes skipped): energy "
              f"{loc['energy']:.3f} (uniform map {loc['chance_energy']:.3f}), pointing {loc['pointing']:.3f}")
        mp = loc["matched_prior"]
        clamp = f", sigma clamped at its {mp['clamped']}imum" if mp["clamped"] else ""
        print(f"matched prior (the centre prior's map at sigma {mp['sigma']:.3f} of the side; concentration: maps "
              f"{mp['concentration_method']:.3f}, prior {mp['concentration_prior']:.3f}{clamp}): energy "
              f"{mp['energy']:.3f}, method minus prior {mp['energy_diff']:+.3f} [{mp['energy_diff_ci'][0]:+.3f}, "
              f"{mp['energy_diff_ci'][1]:+.3f}]")
    elif loc:
        print(f"localisation: none of the {loc['n_skipped']} evaluation images has a box in {args.boxes}")


if __name__ == "__main__":
    run_stage(main)
