"""Stage `timing`: per-image explanation time of every method for every backbone (Table V).

A measurement, not a result: it differs run to run, so the stage has no DVC output (dvc.lock stays a function of
the inputs). It writes reports/timing/<backbone>.json and Table V into --out-dir, git-tracked run facts.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from scanbench.backbones import get_backbone, load_target
from scanbench.config import data_root
from scanbench.data import load_images, load_manifest
from scanbench.engine import target_engine
from scanbench.explainers.base import methods_for
from scanbench.explainers.factory import explainer_from_params
from scanbench.io import write_json
from scanbench.report.tables import write_timing_table
from scanbench.scan.train import scan_decoder_path
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser
from scanbench.timing import device_description, measure_methods, timing_indices

MIN_SAMPLES = 32   # docs/METHODS.md §3: median and spread over at least 32 samples


def time_backbone(backbone: str, params: dict, manifest_path: Path, targets: Path, scan_models: Path,
                  device: torch.device) -> dict:
    spec = get_backbone(backbone)
    manifest = load_manifest(manifest_path)
    images = load_images(data_root(params), manifest["path"].to_numpy()[timing_indices(manifest, params)],
                         spec.input_size)
    ev = params["evaluate"]
    model = load_target(backbone, targets / backbone / "model.pt", device=device)
    # the engine on the model's device, unless it is ONNX Runtime's CPU one
    engine = target_engine(backbone, targets, ev["engine"], batch_size=ev["batch_size"], model=model, device=device)
    decoder = scan_decoder_path(backbone, scan_models)
    classes = engine(images).argmax(1)
    explainers = {method: explainer_from_params(method, model, spec, params, engine=engine,
                                                decoder_path=decoder if method == "scan" else None)
                  for method in methods_for(spec.family, params["timing"]["methods"])}
    # the same measurement as benchmarks/bench_forward.py: interleaved in a seeded random order, LIME/RISE capped
    methods = measure_methods(explainers, images, classes, params["timing"], seed=params["seed"])
    for m, r in methods.items():
        ratio = f"{r['ratio_to_gradcam']:.2f}x Grad-CAM" if r["ratio_to_gradcam"] else "no Grad-CAM reference"
        print(f"{m:>24}: {r['ms_per_image']:9.1f} ms/image (IQR {r['ms_iqr'][0]:.1f}-{r['ms_iqr'][1]:.1f}), "
              f"batched {r['ms_per_image_batched']:.1f} ms/image, {ratio}")
    return {"device": device_description(device), "n_images": len(images), "methods": methods}


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, targets=True, scan_models=True)
    ap.add_argument("--out-dir", required=True, type=Path)
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    device = compute_device(params)
    if params["timing"]["n_images"] < MIN_SAMPLES:
        print(f"warning: timing.n_images = {params['timing']['n_images']} < {MIN_SAMPLES}: the spread is a rough "
              f"one", file=sys.stderr)
    timings = {b: time_backbone(b, params, args.manifest, args.targets, args.scan_models, device)
               for b in params["backbones"]}
    for b, t in timings.items():
        write_json(args.out_dir / f"{b}.json", t)
    write_timing_table(timings, params, args.out_dir)   # Table V, beside the per-backbone JSONs


if __name__ == "__main__":
    run_stage(main)
