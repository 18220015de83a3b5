"""Stage `sanity`: model-weight and label randomisation checks (Table IV) for one backbone."""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import explainer_stage_parser, load_target_engine, run_stage  # noqa: E402

import torch  # noqa: E402

from scanbench.backbones import get_backbone  # noqa: E402
from scanbench.config import data_root, load_params, set_threads  # noqa: E402
from scanbench.data import eval_indices, load_images, load_manifest  # noqa: E402
from scanbench.explainers.base import methods_for  # noqa: E402
from scanbench.io import write_json  # noqa: E402
from scanbench.sanity import sanity_check, summary_line  # noqa: E402


def main() -> None:
    ap = explainer_stage_parser(__doc__)
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
    model, engine, decoder = load_target_engine(args, params)
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
