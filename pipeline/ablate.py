"""Stage `ablate_*` (Tables VI-IX): one SCAN setting of one backbone, trained (alpha, layer, components) or
re-used (P at inference), explained and evaluated on the first `ablation.n_images` evaluation images."""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from scanbench.backbones import get_backbone, load_target  # noqa: E402
from scanbench.config import check_percentile, data_root, load_params, seed_everything, set_threads  # noqa: E402
from scanbench.data import eval_indices, load_images, load_manifest  # noqa: E402
from scanbench.engine import ForwardEngine  # noqa: E402
from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.features import load_features  # noqa: E402
from scanbench.io import atomic_path, write_json  # noqa: E402
from scanbench.metrics import evaluate_maps  # noqa: E402
from scanbench.scan.explainer import SCANExplainer  # noqa: E402
from scanbench.scan.train import save_decoder, train_decoder  # noqa: E402

KINDS = ("alpha", "layer", "components", "p")
N_EXAMPLE_MAPS = 4


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--kind", required=True, choices=KINDS)
    ap.add_argument("--setting", required=True)
    ap.add_argument("--out", required=True, type=Path, help="JSON; example maps go beside it as .npz")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/manifest.csv")
    args = ap.parse_args()
    params = load_params(args.params)
    set_threads()
    seed_everything(params["seed"])
    abl, ev = params["ablation"], params["evaluate"]
    spec = get_backbone(args.backbone)
    model = load_target(spec.name, f"models/targets/{spec.name}/model.pt")

    alpha, layer, variant, p = float(abl["base_alpha"]), "default", "full", float(params["scan"]["p_infer"])
    if args.kind == "alpha":
        alpha = float(args.setting)
    elif args.kind == "layer":
        layer = args.setting
        spec.resolve_layer(layer)
    elif args.kind == "components":
        variant = args.setting
    else:
        p = check_percentile(float(args.setting), "ablation.percentiles")

    summary: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.kind == "p":
            decoder_path = Path(f"models/scan/{spec.name}/default/decoder.pt")
        else:
            feats = Path(f"features/{spec.name}/{layer}")
            decoder, _, summary = train_decoder(load_features(feats / "train"), load_features(feats / "holdout"),
                                                spec, params, alpha, variant=variant, epochs=abl["epochs"],
                                                n_train=abl["n_train"], seed=params["seed"])
            decoder_path = Path(tmp) / "decoder.pt"
            save_decoder(decoder_path, decoder, summary)
        explainer = SCANExplainer(model, spec, decoder_path=str(decoder_path), p=p,
                                  batch_size=params["explain"]["batch_size"], seed=params["seed"])
        manifest = load_manifest(args.manifest)
        idx = eval_indices(manifest, params)[: abl["n_images"]]
        images = load_images(data_root(params), manifest["path"].to_numpy()[idx], spec.input_size)
        labels = torch.from_numpy(manifest["label"].to_numpy()[idx])
        with torch.no_grad():
            classes = model(images).argmax(1)
        maps = explainer.explain(images, classes)
    engine = ForwardEngine(model, ev["engine"], f"models/targets/{spec.name}/model.onnx", batch_size=ev["batch_size"])
    result = evaluate_maps(engine, images, maps, labels, classes, grid=spec.grid, fractions=ev["fractions"],
                           n_resamples=ev["bootstrap"], seed=params["seed"])
    fair = result["variants"]["fair"]
    out = {"backbone": spec.name, "kind": args.kind, "setting": args.setting, "alpha": alpha, "layer": layer,
           "variant": variant, "p": p, "n_images": int(len(idx)),
           "pos_auc": fair["pos_auc"], "neg_auc": fair["neg_auc"], "auc_d": fair["auc_d"],
           "auc_d_ci": fair["auc_d_ci"], "full": {k: result["variants"]["full"][k] for k in ("pos_auc", "neg_auc", "auc_d")},
           "drop": result["drop"], "inc": result["inc"],
           "val_confidence_area": summary.get("val_confidence_area"), "target_area": summary.get("target_area"),
           "train_seconds": summary.get("train_seconds")}
    with atomic_path(args.out.with_suffix(".npz"), suffix=".npz") as tmp_npz:
        np.savez_compressed(tmp_npz, maps=maps[:N_EXAMPLE_MAPS].numpy().astype(np.float16),
                            indices=idx[:N_EXAMPLE_MAPS])
    write_json(args.out, out)
    print(f"{spec.name} {args.kind}={args.setting}: AUC-D {fair['auc_d']:.2f} (neg {fair['neg_auc']:.2f}, "
          f"pos {fair['pos_auc']:.2f}) on {len(idx)} images")


if __name__ == "__main__":
    run_stage(main)
