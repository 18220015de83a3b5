"""Stage `head`: fit a classifier head for each pretrained backbone that cannot score the data's classes as it is
(no classifier in timm, as DINO; or classes that are not ImageNet's), by a linear probe on its penultimate features
of the train split (cached as float16 in the output), and with head.kind last_block then fine-tune the backbone's
last block with it on the train images; measure val top-1 on the `targets` stage's val images. Writes
cache/head/meta.json always (`heads` empty when no backbone needs one: the stage then loads no model), and
cache/head/<backbone>/{head.pt, curves.csv, features_*.npy} per fitted head."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from scanbench.backbones import get_backbone, validate_backbone_params
from scanbench.config import check_head_params, data_root, seed_everything
from scanbench.data import class_table, load_images, load_manifest, seeded_subset
from scanbench.errors import ScanbenchError
from scanbench.head import (
    cache_penultimate_features,
    fine_tune_last_block,
    fit_linear_probe,
    heads_needed,
    images_top1,
    probe_top1,
    save_head,
    weights_file,
)
from scanbench.io import atomic_path, write_json
from scanbench.stages._cli import compute_device, load_stage_params, log_fact, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--out", default="cache/head")
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    validate_backbone_params(params)
    cfg = check_head_params(params)
    out = Path(args.out)
    manifest = load_manifest(args.manifest)
    classes = class_table(manifest)
    needed = heads_needed(params, classes["imagenet_index"].tolist())
    if not needed:
        # Every backbone keeps its ImageNet head (or is trained here): the marker keeps the DAG's shape the same
        # for every profile and data root, as `teacher` does. It holds no head param, so changing one re-runs
        # this stage alone (same bytes: `targets` does not re-run).
        write_json(out / "meta.json", {"heads": {}, "skipped": "every backbone has an ImageNet head and every "
                                                                "class is an ImageNet class"})
        print("head: skipped (every backbone has an ImageNet head and every class is an ImageNet class)")
        return
    meta: dict = {"kind": cfg["kind"], "n_classes": int(len(classes)), "heads": {}}
    if cfg["kind"] == "last_block":
        lacking = [name for name in needed if not get_backbone(name).last_block]
        if lacking:
            raise ScanbenchError(f"head.kind last_block: backbone(s) {', '.join(lacking)} name no last_block in the "
                                 f"registry; set head.kind: linear_probe")
    device = compute_device(params)
    seed_everything(params["seed"])
    root = data_root(params)
    rel = manifest["path"].to_numpy()
    labels = manifest["label"].to_numpy()
    train_idx = seeded_subset(manifest, "train", cfg.get("n_train"), params["seed"])
    val_idx = seeded_subset(manifest, "val", params["targets"].get("n_val"), params["seed"])
    batch = params["targets"]["batch_size"]
    for name, reason in needed.items():
        spec = get_backbone(name)
        print(f"head {name}: {reason}: linear probe on {len(train_idx)} train images")
        model = spec.build(pretrained=True, head_classes=len(classes), weights=weights_file(params, name)).to(device)
        f_train = cache_penultimate_features(model, root, rel[train_idx], spec.input_size, batch, device,
                                             out / name / "features_train.npy")
        f_val = cache_penultimate_features(model, root, rel[val_idx], spec.input_size, batch, device,
                                           out / name / "features_val.npy")
        layer, curves = fit_linear_probe(f_train, labels[train_idx], len(classes), cfg["epochs"], cfg["lr"],
                                         cfg["weight_decay"], cfg["batch_size"], params["seed"], device)
        val = probe_top1(layer, f_val, labels[val_idx])
        info = {"reason": reason, "feature_dim": int(f_train.shape[1]), "n_train": int(len(train_idx)),
                "n_val": int(len(val_idx)), "epochs": cfg["epochs"],
                "train_top1": round(curves[-1]["train_top1"], 2), "val_top1": round(val, 2)}
        model.head.load_state_dict(layer.state_dict())
        state = {f"head.{k}": v for k, v in layer.state_dict().items()}
        if cfg["kind"] == "last_block":
            # from the probe, the last block and the head together, on the images (the features change)
            def load(rows, idx=train_idx):
                return load_images(root, rel[idx[rows]], spec.input_size)

            names, tuned = fine_tune_last_block(model, spec.last_block, load, labels[train_idx],
                                                cfg["last_block_epochs"], cfg["last_block_lr"], cfg["weight_decay"],
                                                cfg["batch_size"], params["seed"])
            curves = [{**row, "phase": "probe"} for row in curves] + [{**row, "phase": "last_block"} for row in tuned]
            val_tuned = images_top1(model, root, rel[val_idx], labels[val_idx], spec.input_size, batch, device)
            info.update(probe_val_top1=info["val_top1"], val_top1=round(val_tuned, 2),
                        train_top1=round(tuned[-1]["train_top1"], 2), fine_tuned_from=spec.last_block,
                        last_block_epochs=cfg["last_block_epochs"],
                        n_fine_tuned_params=int(sum(model.get_parameter(n).numel() for n in names)))
            params_by_name = dict(model.named_parameters())
            state = {n: params_by_name[n] for n in names}
        save_head(out / name / "head.pt", name, len(classes), state, info)
        with atomic_path(out / name / "curves.csv", suffix=".csv") as tmp:
            pd.DataFrame(curves).to_csv(tmp, index=False)
        meta["heads"][name] = info
        print(f"head {name}: val top-1 {info['val_top1']:.2f}% on {len(val_idx)} images "
              f"(train {info['train_top1']:.2f}%)")
    log_fact(n_heads=len(needed))
    write_json(out / "meta.json", meta)


if __name__ == "__main__":
    run_stage(main)
