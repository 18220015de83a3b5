"""Stage `teacher`: cache the images at the trained ViT's input size and the pretrained CNN's logits
on the train split (soft labels for distillation), so the ViT's training epochs decode no JPEG."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from scanbench.backbones import get_backbone
from scanbench.config import data_root, seed_everything
from scanbench.data import class_table, load_manifest, seeded_subset
from scanbench.engine import ForwardEngine, export_onnx
from scanbench.head import pretrained_target
from scanbench.io import atomic_path, save_npy, write_json
from scanbench.stages._cli import compute_device, load_stage_params, run_stage, stage_parser
from scanbench.teacher import resize_images, student_input_size, teacher_logits


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--head", default="cache/head", help="the `head` stage's output (heads fitted for the data)")
    ap.add_argument("--out", default="cache/teacher")
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    device = compute_device(params)
    seed_everything(params["seed"])
    out = Path(args.out)
    trained = [name for name in params["backbones"] if get_backbone(name).trained_here]
    if not trained:
        # Only a backbone trained in the pipeline needs the teacher's logits and the resized images; writing
        # the marker keeps the stage's output (and so the DAG) the same shape for every profile.
        write_json(out / "meta.json", {"skipped": "no backbone in `backbones` is trained in the pipeline"})
        print("teacher: skipped (no backbone in `backbones` is trained in the pipeline)")
        return
    cfg = params["targets"]["vit"]
    root = data_root(params)
    manifest = load_manifest(args.manifest)
    train_idx = seeded_subset(manifest, "train", cfg.get("n_train"), params["seed"])
    val_idx = seeded_subset(manifest, "val", params["targets"].get("n_val"), params["seed"])
    teacher_name = cfg.get("teacher", "effnet_lite0")
    spec = get_backbone(teacher_name)
    # over the data's classes: its ImageNet head restricted to them, or the head the `head` stage fitted
    model = pretrained_target(spec, class_table(manifest), args.head, params, device)
    with atomic_path(out / "teacher.onnx", suffix=".onnx") as tmp_onnx:
        export_onnx(model, tmp_onnx, spec.input_size)
        # ONNX Runtime on the CPU; on a GPU without its CUDA provider, the PyTorch engine there (engine.py)
        engine = ForwardEngine(model, "onnx", tmp_onnx, batch_size=params["targets"]["batch_size"], device=device)
        rel = manifest["path"].to_numpy()
        logits = teacher_logits(engine, root, rel[train_idx], spec.input_size, params["targets"]["batch_size"])
    size = student_input_size(trained)   # the input size of the backbone(s) trained here
    save_npy(out / "logits_train.npy", logits.astype(np.float32))
    save_npy(out / "images_train.npy", resize_images(root, rel[train_idx], size, "resize train"))
    save_npy(out / "images_val.npy", resize_images(root, rel[val_idx], size, "resize val"))
    labels = manifest["label"].to_numpy()
    teacher_top1 = float((logits.argmax(1) == labels[train_idx]).mean() * 100)
    write_json(out / "meta.json", {"teacher": teacher_name, "image_size": size,
                                   "train_indices": train_idx.tolist(), "val_indices": val_idx.tolist(),
                                   "teacher_train_top1": teacher_top1})
    print(f"teacher {teacher_name}: train top-1 {teacher_top1:.1f}% on {len(train_idx)} images")


if __name__ == "__main__":
    run_stage(main)
