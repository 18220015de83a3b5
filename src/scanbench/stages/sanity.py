"""Stage `sanity`: model-weight and label randomisation checks for one backbone and method: Table IV's AUCs
(--out) and the map similarities after cascading / independent layer and label randomisation (--maps-out)."""
from __future__ import annotations

from pathlib import Path

import torch

from scanbench.backbones import get_backbone, load_target
from scanbench.config import data_root
from scanbench.data import eval_indices, load_images, load_manifest
from scanbench.distributed import destroy_process_group, gather_to_rank0, init_process_group, shard
from scanbench.engine import target_engine
from scanbench.explainers.base import check_method
from scanbench.explainers.factory import explainer_from_params
from scanbench.io import write_json
from scanbench.sanity import (
    check_cascade,
    concat_sanity_scores,
    map_sanity,
    sanity_scores,
    sanity_summary,
    summary_line,
)
from scanbench.scan.train import scan_decoder_path
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, targets=True, scan_models=True)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--method", required=True, help="one of sanity.methods.<family>")
    ap.add_argument("--out", required=True, type=Path, help="Table IV's AUCs (sanity/<backbone>/<method>)")
    ap.add_argument("--maps-out", required=True, help="the map-similarity JSON (sanity_maps/<backbone>/<method>)")
    args = ap.parse_args(argv)
    params = load_stage_params(args, data_parallel=True)   # compute.nproc > 1: re-run under torchrun, then exit
    device = compute_device(params)
    ev, sc = params["evaluate"], params["sanity"]
    cascade = check_cascade(sc["cascade"])   # (load_params checked it; this gives the floats)
    spec = get_backbone(args.backbone)
    manifest = load_manifest(args.manifest)
    all_idx = eval_indices(manifest, params)[: sc["n_images"]]
    ctx = init_process_group(device)
    rows = shard(len(all_idx), ctx)   # this rank's block of the images (every rank makes the seeded draws)
    idx = all_idx[rows.start:rows.stop]
    images = load_images(data_root(params), manifest["path"].to_numpy()[idx], spec.input_size)
    labels = torch.from_numpy(manifest["label"].to_numpy()[idx])
    model = load_target(spec.name, args.targets / spec.name / "model.pt", device=device)
    # the engine on the model's device, unless it is ONNX Runtime's CPU one
    engine = target_engine(spec.name, args.targets, ev["engine"], batch_size=ev["batch_size"], model=model,
                           device=device)
    decoder = scan_decoder_path(spec.name, args.scan_models)
    if engine.kind == "torch":   # the perturbed copies are built where the model runs
        images = images.to(engine.device)
    method = args.method
    check_method(method, spec.family)   # unknown or inapplicable -> one clear line

    def make(m, forward):
        return explainer_from_params(method, m, spec, params, engine=forward,
                                     decoder_path=decoder if method == "scan" else None)
    kept: dict = {}
    scores = sanity_scores(make, model, engine, images, labels, spec.grid, ev["fractions"], seed=params["seed"],
                           batch_size=ev["batch_size"], rows=rows, n_total=len(all_idx), maps_out=kept)
    parts = gather_to_rank0(scores, ctx)
    # the map similarities pair each image's map with another image's and bootstrap over all images: rank 0
    # computes them on every image from the shards' gathered maps (the same numbers as a single run)
    maps = gather_to_rank0({k: kept[k].cpu() for k in ("pred", "original", "random_label")}, ctx)
    if ctx.is_main:   # rank 0 writes
        result = sanity_summary(concat_sanity_scores(parts), ev["fractions"])
        print(summary_line(method, result))
        if ctx.distributed:
            images = load_images(data_root(params), manifest["path"].to_numpy()[all_idx], spec.input_size)
            images = images.to(engine.device) if engine.kind == "torch" else images
        pred, original, label_maps = (torch.cat([m[k] for m in maps]).to(device)
                                      for k in ("pred", "original", "random_label"))
        similarity = map_sanity(make, model, images, pred, original, kept["random_model"], cascade,
                                size=sc["similarity_size"], n_resamples=ev["bootstrap"], seed=params["seed"],
                                label_maps=label_maps, batch_size=ev["batch_size"])
        full = similarity["cascading"]["1"]
        print(f"{method}: similarity to the trained model's maps after full randomisation: "
              + ", ".join(f"{k} {full[k]:.3f}" for k in ("spearman", "ssim", "hog")))
        write_json(args.out, result)
        write_json(args.maps_out, similarity)
    destroy_process_group(ctx)


if __name__ == "__main__":
    run_stage(main)
