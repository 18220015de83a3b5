"""Stage `timing`: per-image explanation time of every method for one backbone (Table V)."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import explainer_stage_parser, load_target_engine, run_stage  # noqa: E402

from scanbench.backbones import get_backbone  # noqa: E402
from scanbench.config import data_root, load_params, set_threads  # noqa: E402
from scanbench.data import load_images, load_manifest, seeded_subset  # noqa: E402
from scanbench.explainers.base import methods_for  # noqa: E402
from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.io import write_json  # noqa: E402
from scanbench.timing import device_description, time_explainers, timing_summary  # noqa: E402

MIN_SAMPLES = 32   # SPEC §6: median and spread over at least 32 samples


def main() -> None:
    ap = explainer_stage_parser(__doc__)
    args = ap.parse_args()
    from scanbench.explainers.factory import explainer_from_params

    params = load_params(args.params)
    set_threads()
    tp = params["timing"]
    if tp["n_images"] < MIN_SAMPLES:
        print(f"warning: timing.n_images = {tp['n_images']} < {MIN_SAMPLES}: the spread is a rough one",
              file=sys.stderr)
    spec = get_backbone(args.backbone)
    manifest = load_manifest(args.manifest)
    idx = seeded_subset(manifest, "val", tp["n_images"], params["seed"])
    images = load_images(data_root(params), manifest["path"].to_numpy()[idx], spec.input_size)
    model, engine, decoder = load_target_engine(args, params)
    classes = engine(images).argmax(1)
    # LIME and RISE cost seconds per image: timing.n_images_per_method caps them (a rougher spread)
    caps = {m: int(n) for m, n in (tp.get("n_images_per_method") or {}).items()}
    for m, n in caps.items():
        if n < 1:
            raise ScanbenchError(f"timing.n_images_per_method.{m} must be >= 1 (got {n})")
    explainers = {method: explainer_from_params(method, model, spec, params, engine=engine,
                                                decoder_path=decoder if method == "scan" else None)
                  for method in methods_for(spec.family, tp["methods"])}
    # interleaved: image k of every method, then image k + 1, so that drift on the shared box hits all alike
    batch1 = time_explainers(explainers, images, classes, batch_size=1, n_images=caps)
    batched = time_explainers(explainers, images, classes, batch_size=tp["batch_size"], n_images=caps)
    methods = timing_summary(batch1, batched)
    write_json(args.out, {"device": device_description(), "n_images": len(images), "methods": methods})
    for m, r in methods.items():
        ratio = f"{r['ratio_to_gradcam']:.2f}x Grad-CAM" if r["ratio_to_gradcam"] else "no Grad-CAM reference"
        print(f"{m:>24}: {r['ms_per_image']:9.1f} ms/image (IQR {r['ms_iqr'][0]:.1f}-{r['ms_iqr'][1]:.1f}), "
              f"batched {r['ms_per_image_batched']:.1f} ms/image, {ratio}")


if __name__ == "__main__":
    run_stage(main)
