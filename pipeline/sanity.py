"""Stage `sanity`: model-weight and label randomisation checks (Table IV) for one backbone."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402

import torch  # noqa: E402

from scanbench.backbones import get_backbone, load_target  # noqa: E402
from scanbench.config import data_root, load_params, set_threads  # noqa: E402
from scanbench.data import eval_indices, load_images, load_manifest  # noqa: E402
from scanbench.engine import ForwardEngine  # noqa: E402
from scanbench.explainers.base import methods_for  # noqa: E402
from scanbench.io import write_json  # noqa: E402
from scanbench.sanity import sanity_check, summary_line  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--targets", default="models/targets", type=Path, help="folder of <backbone>/model.{pt,onnx}")
    ap.add_argument("--scan-models", default="models/scan", type=Path, help="folder of <backbone>/default/decoder.pt")
    args = ap.parse_args()
    from scanbench.explainers.factory import explainer_from_params

    params = load_params(args.params)
    set_threads()
    ev, sc = params["evaluate"], params["sanity"]
    spec = get_backbone(args.backbone)
    manifest = load_manifest(args.manifest)
    idx = eval_indices(manifest, params)[: sc["n_images"]]
    images = load_images(data_root(params), manifest["path"].to_numpy()[idx], spec.input_size)
    labels = torch.from_numpy(manifest["label"].to_numpy()[idx])
    model = load_target(args.backbone, args.targets / args.backbone / "model.pt")
    engine = ForwardEngine(model, ev["engine"], args.targets / args.backbone / "model.onnx",
                           batch_size=ev["batch_size"])
    decoder = args.scan_models / args.backbone / "default" / "decoder.pt"
    results = {}
    for method in methods_for(spec.family, sc["methods"].get(spec.family, [])):
        def make(m, forward, method=method):
            return explainer_from_params(method, m, spec, params, engine=forward,
                                         decoder_path=decoder if method == "scan" else None)
        results[method] = sanity_check(make, model, engine, images, labels, spec.grid, ev["fractions"],
                                       seed=params["seed"], batch_size=ev["batch_size"])
        print(summary_line(method, results[method]))
    write_json(args.out, results)


if __name__ == "__main__":
    run_stage(main)
