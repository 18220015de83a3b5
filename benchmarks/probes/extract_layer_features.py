"""Issue-13 research probe, not a pipeline stage: EfficientNet features of another layer alias (alt1, alt2) for the
200 held-out val images and a seeded 3,000-image subset of the decoder-training images (the rows
`training_rows(n, 3000, params' seed)` picks, so a decoder on the default layer with n_train=3000 sees the same images).
Run from a checkout holding a default-profile run (data/manifest.csv, models/targets): 
    PYTHONPATH=src python benchmarks/probes/extract_layer_features.py alt1 [N_TRAIN]
(N_TRAIN: the subset's size, default 3000; "all": every decoder-training image, as the features stage takes.)
Writes features/effnet_lite0/<alias>/{holdout,train} as the features stage does (params' batch size and
scan.out_size: null = 56 px for the 7 x 7 grid; the subset seeded with params' seed)."""
import sys, torch
from pathlib import Path
from scanbench.backbones import get_backbone, load_target
from scanbench.config import data_root, load_params, seed_everything
from scanbench.data import holdout_indices, load_manifest, scan_train_indices
from scanbench.features import training_rows
from scanbench.feature_extraction import extract_features
from scanbench.compute import available_cores  # noqa: E402
torch.set_num_threads(available_cores())
alias = sys.argv[1]
n_sub = None if len(sys.argv) > 2 and sys.argv[2] == "all" else int(sys.argv[2]) if len(sys.argv) > 2 else 3000
params = load_params("params.yaml"); seed_everything(params["seed"])
spec = get_backbone("effnet_lite0")
manifest = load_manifest("data/manifest.csv")
model = load_target(spec.name, f"models/targets/{spec.name}/model.pt")
root = data_root(params)
train_idx = scan_train_indices(manifest, params)
for subset, idx in (("holdout", holdout_indices(manifest, params)), ("train", train_idx[training_rows(len(train_idx), n_sub, params["seed"])])):
    rows = manifest.iloc[idx]
    p = extract_features(model, spec.resolve_layer(alias), root, rows["path"].tolist(), rows["label"].tolist(),
                         spec.input_size, Path(f"features/{spec.name}/{alias}/{subset}"), batch_size=params["features"]["batch_size"],
                         indices=idx.tolist(), extra_meta={"backbone": spec.name, "layer_alias": alias, "subset": subset},
                         out_size=params["scan"].get("out_size"), grid=spec.grid)
    print(alias, subset, len(idx), p, flush=True)
