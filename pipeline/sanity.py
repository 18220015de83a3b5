"""Stage `sanity`: model-weight and label randomisation checks (Table IV) for one backbone and method."""
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
from scanbench.sanity import concat_sanity_scores, sanity_scores, sanity_summary, summary_line  # noqa: E402


def main() -> None:
    ap = explainer_stage_parser(__doc__)
    ap.add_argument("--method", required=True, help="one of sanity.methods.<family>")
    args = ap.parse_args()
    from scanbench.explainers.factory import explainer_from_params

    params = load_params(args.params)
    relaunch_under_torchrun(params)   # compute.nproc > 1: this script again, under torchrun (then exits here)
    device = resolve(params)
    ev, sc = params["evaluate"], params["sanity"]
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
    scores = sanity_scores(make, model, engine, images, labels, spec.grid, ev["fractions"], seed=params["seed"],
                           batch_size=ev["batch_size"], rows=rows, n_total=len(all_idx))
    parts = gather_to_rank0(scores, ctx)
    if ctx.is_main:   # rank 0 writes
        result = sanity_summary(concat_sanity_scores(parts), ev["fractions"])
        print(summary_line(method, result))
        write_json(args.out, result)
    destroy_process_group(ctx)


if __name__ == "__main__":
    run_stage(main)
