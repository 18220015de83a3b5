"""Stage `evaluate`: perturbation AUCs (fair and full resolution), Drop/Inc, bootstrap intervals and,
for the random method, the ten-random-maps calibration, for one backbone and method.

Per-image values (for paired comparisons and Win% in the report): `per_image` holds `index` (manifest rows, the
images' identity), `drop` and `inc`; `variants.<fair|full>.per_image_auc_d` each image's AUC-D, in that order.

When data/boxes.csv (the `boxes` stage) holds boxes, `localisation` adds the energy inside the boxes and the pointing
game of the maps as given (input resolution), with bootstrap intervals, over the evaluation images that have boxes
(scanbench.metrics.localisation); without boxes the JSON has no `localisation` key (the same bytes as before)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import log_fact, run_stage  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scanbench.backbones import get_backbone  # noqa: E402
from scanbench.boxes import box_masks, load_checked_boxes  # noqa: E402
from scanbench.compute import resolve  # noqa: E402
from scanbench.config import data_root, load_params  # noqa: E402
from scanbench.data import load_images, load_manifest  # noqa: E402
from scanbench.distributed import (destroy_process_group, gather_to_rank0, init_process_group,  # noqa: E402
                                   relaunch_under_torchrun, shard)
from scanbench.engine import target_engine  # noqa: E402
from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.io import load_npz, write_json  # noqa: E402
from scanbench.metrics import concat_scores, localisation_scores, per_image_scores, summarize_scores, throughput  # noqa: E402,E501


def load_maps(path: Path, stage: str = "explain") -> dict[str, np.ndarray]:
    if not path.exists():
        raise ScanbenchError(f"maps file {path} not found: run the explain stage first")
    z = load_npz(path, stage=stage)
    missing = {"maps", "indices", "labels", "classes"} - set(z)
    if missing:
        raise ScanbenchError(f"maps file {path} lacks {', '.join(sorted(missing))}: re-run the explain stage")
    return {k: z[k] for k in ("maps", "indices", "labels", "classes")}


def localisation(boxes, paths: list[str], indices: np.ndarray, maps: np.ndarray, size: int, n_resamples: int,
                 seed: int) -> dict | None:
    """The `localisation` object of the maps (N x size x size) of the images at `paths` (manifest rows `indices`),
    or None when data/boxes.csv holds no box at all (then the evaluate JSON has no such key)."""
    if not len(boxes):
        return None
    return localisation_scores(maps, box_masks(boxes, paths, size), np.asarray(indices).astype(int).tolist(),
                               n_resamples, seed)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--method", required=True)
    ap.add_argument("--maps", required=True, type=Path)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--boxes", default="data/boxes.csv", type=Path, help="the `boxes` stage's checked boxes")
    ap.add_argument("--targets", default="models/targets", type=Path, help="folder of <backbone>/model.{pt,onnx}")
    args = ap.parse_args()
    params = load_params(args.params)
    relaunch_under_torchrun(params)   # compute.nproc > 1: this script again, under torchrun (then exits here)
    device = resolve(params)
    ev = params["evaluate"]
    spec = get_backbone(args.backbone)
    manifest = load_manifest(args.manifest)
    # the stage that writes these maps, as dvc.yaml names it (dvc.lock names it too, once it has run)
    z = load_maps(args.maps, f"explain_scan@{spec.name}" if args.method == "scan"
                  else f"explain_{spec.family}@{spec.name}-{args.method}")
    if z["indices"].max(initial=-1) >= len(manifest):
        raise ScanbenchError(f"{args.maps} indexes rows beyond {args.manifest}: re-run the explain stage")
    labels = manifest["label"].to_numpy()[z["indices"]]
    if not np.array_equal(labels, z["labels"]):
        raise ScanbenchError(f"labels in {args.maps} disagree with {args.manifest}: re-run the explain stage")
    boxes = load_checked_boxes(args.boxes)   # before the long part: a missing file fails at once
    # ONNX Runtime on the CPU (or its CUDA provider); without that provider on a GPU, the PyTorch engine there
    n = len(z["indices"])
    if z["maps"].shape != (n, spec.input_size, spec.input_size):
        raise ScanbenchError(f"maps in {args.maps} have shape {tuple(z['maps'].shape)}, expected "
                             f"{n} x {spec.input_size} x {spec.input_size}: re-run the explain stage")
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
    loc = localisation(boxes, manifest["path"].astype(str).to_numpy()[z["indices"]].tolist(), z["indices"], z["maps"],
                       spec.input_size, ev["bootstrap"], params["seed"])
    if loc is not None:   # only with boxes: without them the JSON is what it was before localisation existed
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
    elif loc:
        print(f"localisation: none of the {loc['n_skipped']} evaluation images has a box in {args.boxes}")


if __name__ == "__main__":
    run_stage(main)
