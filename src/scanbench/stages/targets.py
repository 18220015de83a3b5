"""Stage `targets` (one per backbone): obtain the target model (pretrained weights, with the head the `head` stage
fitted where it fitted one, or trained here for the default profile's ViT), export it to ONNX for forward-only
work, and measure val top-1 (of backbone + head where there is a fitted head: the model every later stage uses)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from scanbench.accuracy import top1
from scanbench.backbones import get_backbone, load_target, save_target, validate_backbone_params
from scanbench.config import data_root, seed_everything
from scanbench.data import class_table, load_images, load_manifest, seeded_subset
from scanbench.engine import ForwardEngine, export_onnx
from scanbench.head import pretrained_target
from scanbench.hybrid_train import pretrained_trunk_kwargs, train_target
from scanbench.io import atomic_path, load_npy, read_json, write_json
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser
from scanbench.vit_train import ViTTrainConfig


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--teacher", default="cache/teacher")
    ap.add_argument("--head", default="cache/head", help="the `head` stage's output (heads fitted for the data)")
    ap.add_argument("--out", default=None, help="default: models/targets/<backbone>")
    ap.add_argument("--results", default="results/targets")
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    device = compute_device(params)
    validate_backbone_params(params)
    seed_everything(params["seed"])
    spec = get_backbone(args.backbone)
    manifest = load_manifest(args.manifest)
    classes = class_table(manifest)
    out = Path(args.out or f"models/targets/{spec.name}")
    labels = manifest["label"].to_numpy()
    extra: dict = {}
    if spec.trained_here:
        cfg = params["targets"]["vit"]
        # input size, patch and depth are the registry's (its layers depend on them); width and heads are params
        build_kwargs = {"num_classes": len(classes), "width": cfg["width"], "heads": cfg["heads"]}
        # initialised on the CPU (seeded), trained on the device; a hybrid ViT's trunk: pretrained weights
        model = spec.build(**build_kwargs, **pretrained_trunk_kwargs(spec, params)).to(device)
        teacher = Path(args.teacher)
        meta = read_json(teacher / "meta.json")
        train_idx, val_idx = np.array(meta["train_indices"]), np.array(meta["val_indices"])
        tcfg = ViTTrainConfig(epochs=cfg["epochs"], batch_size=cfg["batch_size"], lr=cfg["lr"],
                              weight_decay=cfg["weight_decay"], warmup_epochs=cfg["warmup_epochs"],
                              distill_temperature=cfg["distill_temperature"], distill_weight=cfg["distill_weight"],
                              label_smoothing=cfg["label_smoothing"], seed=params["seed"])
        train_vit = train_target(model)   # vit_train.train_vit, or hybrid_train.train_hybrid for a hybrid ViT
        steps: list[dict] = []
        curves = train_vit(model, load_npy(teacher / "images_train.npy", "teacher", mmap_mode="r"),
                           labels[train_idx], load_npy(teacher / "logits_train.npy", "teacher"),
                           load_npy(teacher / "images_val.npy", "teacher"),
                           labels[val_idx], tcfg, step_curves=steps)
        # per epoch (with the held-out top-1) and per optimiser step: `dvc plots show` draws both
        for name, rows in (("curves", curves), ("steps", steps)):
            with atomic_path(Path(args.results) / f"{spec.name}_{name}.csv", suffix=".csv") as tmp:
                pd.DataFrame(rows).to_csv(tmp, index=False)
        extra = {"epochs": cfg["epochs"], "n_train": int(len(train_idx))}
    else:
        model = pretrained_target(spec, classes, args.head, params)
        head_meta = read_json(Path(args.head) / "meta.json")
        head = head_meta["heads"].get(spec.name)
        # with a fitted head, load_target rebuilds backbone + head from the class count, then loads the tensors
        build_kwargs = {} if head is None else {"head_classes": len(classes)}
        if head is not None:
            # the head stage's measures (on float16 features, or the fine-tuned model): val_top1 below is the
            # saved model's through ONNX, on the same images
            extra = {"head": {"kind": head_meta["kind"], "reason": head["reason"], "n_train": head["n_train"],
                              "probe_val_top1": head.get("probe_val_top1", head["val_top1"]),
                              **({"fine_tuned_val_top1": head["val_top1"]} if "fine_tuned_from" in head else {})}}
    save_target(out / "model.pt", spec, model, build_kwargs)
    model = load_target(spec.name, out / "model.pt", device=device)  # what later stages load: measure exactly that
    export_onnx(model, out / "model.onnx", spec.input_size)
    engine = ForwardEngine(model, "onnx", out / "model.onnx", batch_size=params["targets"]["batch_size"],
                           device=device)
    val_idx = seeded_subset(manifest, "val", params["targets"].get("n_val"), params["seed"])
    rel = manifest["path"].to_numpy()
    batch = params["targets"]["batch_size"]
    val_top1 = top1(engine, (load_images(data_root(params), rel[val_idx[i:i + batch]], spec.input_size)
                             for i in range(0, len(val_idx), batch)), labels[val_idx])
    # The ONNX export must agree with PyTorch on real images (the forward-only engine's correctness).
    x = load_images(data_root(params), rel[val_idx[:16]], spec.input_size)
    with torch.inference_mode():
        diff = float((engine(x) - model(x.to(device)).cpu()).abs().max())
    write_json(Path(args.results) / f"{spec.name}.json",
               {"family": spec.family, "val_top1": round(val_top1, 2), "n_val": int(len(val_idx)),
                "onnx_max_abs_logit_diff": diff, **extra})
    print(f"{spec.name}: val top-1 {val_top1:.2f}% on {len(val_idx)} images; ONNX max |diff| {diff:.2e}")


if __name__ == "__main__":
    run_stage(main)
