"""Stage `sanity`: model-weight and label randomisation checks for one backbone and method: Table IV's AUCs
(--out) and the map similarities after cascading / independent layer and label randomisation (--maps-out)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402
from _explainer_stage import explainer_stage_parser, load_target_engine  # noqa: E402

import torch  # noqa: E402

from scanbench.backbones import get_backbone  # noqa: E402
from scanbench.compute import resolve  # noqa: E402
from scanbench.config import data_root, load_params  # noqa: E402
from scanbench.data import eval_indices, load_images, load_manifest  # noqa: E402
from scanbench.distributed import (destroy_process_group, gather_to_rank0, init_process_group,  # noqa: E402
                                   relaunch_under_torchrun, shard)
from scanbench.explainers.base import check_method  # noqa: E402
from scanbench.io import write_json  # noqa: E402
from scanbench.sanity import (check_cascade, concat_sanity_scores, map_sanity, sanity_scores,  # noqa: E402
                              sanity_summary, summary_line)


def main() -> None:
    ap = explainer_stage_parser(__doc__)
    ap.add_argument("--method", required=True, help="one of sanity.methods.<family>")
    ap.add_argument("--maps-out", required=True, help="the map-similarity JSON (sanity_maps/<backbone>/<method>)")
    args = ap.parse_args()
    from scanbench.explainers.factory import explainer_from_params

    params = load_params(args.params)
    relaunch_under_torchrun(params)   # compute.nproc > 1: this script again, under torchrun (then exits here)
    device = resolve(params)
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
    model, engine, decoder = load_target_engine(args, params, device)
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
