"""Stage `timing`: per-image explanation time of every method for every backbone (Table V).

A measurement, not a result: it differs run to run, so the stage has no DVC output (dvc.lock stays a function of
the inputs). It writes reports/timing/<backbone>.json and Table V into --out-dir, git-tracked run facts.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402
from _explainer_stage import explainer_stage_parser, load_target_engine  # noqa: E402

from scanbench.backbones import get_backbone  # noqa: E402
from scanbench.compute import resolve  # noqa: E402
from scanbench.config import data_root, load_params  # noqa: E402
from scanbench.data import load_images, load_manifest  # noqa: E402
from scanbench.explainers.base import methods_for  # noqa: E402
from scanbench.explainers.factory import explainer_from_params  # noqa: E402
from scanbench.io import write_json  # noqa: E402
from scanbench.report.tables import write_timing_table  # noqa: E402
from scanbench.timing import device_description, measure_methods, timing_indices  # noqa: E402

MIN_SAMPLES = 32   # SPEC §6: median and spread over at least 32 samples


def time_backbone(args, params: dict, backbone: str) -> dict:
    args.backbone = backbone
    spec = get_backbone(backbone)
    manifest = load_manifest(args.manifest)
    images = load_images(data_root(params), manifest["path"].to_numpy()[timing_indices(manifest, params)],
                         spec.input_size)
    model, engine, decoder = load_target_engine(args, params, args.device)
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
    return {"device": device_description(args.device), "n_images": len(images), "methods": methods}


def main() -> None:
    ap = explainer_stage_parser(__doc__, per_backbone=False)
    args = ap.parse_args()
    params = load_params(args.params)
    args.device = resolve(params)
    if params["timing"]["n_images"] < MIN_SAMPLES:
        print(f"warning: timing.n_images = {params['timing']['n_images']} < {MIN_SAMPLES}: the spread is a rough "
              f"one", file=sys.stderr)
    timings = {b: time_backbone(args, params, b) for b in params["backbones"]}
    for b, t in timings.items():
        write_json(args.out_dir / f"{b}.json", t)
    write_timing_table(timings, params, args.out_dir)   # Table V, beside the per-backbone JSONs


if __name__ == "__main__":
    run_stage(main)
