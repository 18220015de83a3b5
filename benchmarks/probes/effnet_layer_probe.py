"""Issue-13 research probe (not a pipeline stage; its numbers are quoted in the issue note, not in reports/): train an EfficientNet SCAN decoder on a given layer, score held-out
skill and AUC-D on the 200 held-out val images (never the evaluation images); baselines on the same images.
Run from a checkout holding a default-profile run (features, models), with PYTHONPATH=src; writes /tmp/sb/probe/.
PROBE_BACKBONE=<name> (default effnet_lite0) probes another backbone (held-out baselines: centre, Grad-CAM and
LayerCAM for a CNN, LRP for a ViT; output under /tmp/sb/probe/<name>/).
usage: effnet_layer_probe.py baselines                       (centre, Grad-CAM, LayerCAM on the held-out images; first)
       effnet_layer_probe.py decoder PATH TAG '[80, 90, 95]'  (an existing decoder at these inference P)
       effnet_layer_probe.py TAG LAYER STEPS '{"n_train": 3000, "variant": "full", "p": 95, <scan.* overrides>}'"""
import os, sys, json, time, numpy as np, torch
from pathlib import Path
from scanbench.backbones import get_backbone, load_target
from scanbench.config import data_root, load_params
from scanbench.data import holdout_indices, load_images, load_manifest
from scanbench.engine import target_engine
from scanbench.explainers.factory import explainer_from_params
from scanbench.metrics import evaluate_maps
from scanbench.features import load_features
from scanbench.scan.train import train_decoder, save_decoder
from scanbench.diagnostics import decoder_generalisation
from scanbench.metrics.bootstrap import paired_bootstrap_ci
from scanbench.compute import available_cores  # noqa: E402
torch.set_num_threads(available_cores())
params = load_params("params.yaml"); b = os.environ.get("PROBE_BACKBONE", "effnet_lite0"); spec = get_backbone(b)
manifest = load_manifest("data/manifest.csv"); idx = holdout_indices(manifest, params)
images = load_images(data_root(params), manifest["path"].to_numpy()[idx], spec.input_size)
labels = torch.from_numpy(manifest["label"].to_numpy()[idx])
model = load_target(b, f"models/targets/{b}/model.pt")
engine = target_engine(b, Path("models/targets"), "onnx", batch_size=16)
def score(ex):
    maps = ex.explain(images)
    with torch.no_grad(): cls = model(images).argmax(1)
    r = evaluate_maps(engine, images, maps, labels, cls, grid=spec.grid, fractions=params["evaluate"]["fractions"],
                      n_resamples=1000, seed=0)
    return r["variants"]["fair"]["auc_d"], np.asarray(r["variants"]["fair"]["per_image_auc_d"])
out = Path("/tmp/sb/probe") / ("" if b == "effnet_lite0" else b); out.mkdir(parents=True, exist_ok=True)
if sys.argv[1] == "baselines":
    for m in (("centre", "gradcam", "layercam") if spec.family == "cnn" else ("centre", "gradcam", "lrp")):
        a, per = score(explainer_from_params(m, model, spec, params)); np.save(out / f"{m}.npy", per)
        print(json.dumps({"method": m, "holdout_auc_d": round(a, 2)}), flush=True)
    sys.exit()
if sys.argv[1] == "decoder":   # score an existing checkpoint: decoder PATH TAG
    path, tag = Path(sys.argv[2]), sys.argv[3]; res = {"tag": tag}
    for pv in (json.loads(sys.argv[4]) if len(sys.argv) > 4 else [95]):
        a, per = score(explainer_from_params("scan", model, spec, {**params, "p": pv}, decoder_path=path))
        np.save(out / f"{tag}_p{pv}.npy", per); res[f"auc_d_p{pv}"] = round(a, 2)
        for m in ("centre", "gradcam"):
            f = out / f"{m}.npy"
            if f.exists():
                lo, hi = paired_bootstrap_ci(per, np.load(f)); res[f"p{pv}_minus_{m}"] = [round(lo, 1), round(hi, 1)]
    print(json.dumps(res), flush=True); sys.exit()
tag, alias, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
extra = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
variant = extra.pop("variant", "full"); p_inf = extra.pop("p", params["p"]); n_train = extra.pop("n_train", None)
params["scan"].update(extra)   # out_size from params (null: the backbone's default, 56 px for EfficientNet)
tr, ho = load_features(f"features/{b}/{alias}/train"), load_features(f"features/{b}/{alias}/holdout")
t = time.perf_counter()
dec, curves, summ = train_decoder(tr, ho, spec, params, 4.0, variant=variant, steps=steps, n_train=n_train, progress=False)
dt = time.perf_counter() - t
g = decoder_generalisation(dec, tr, ho, p_inf, variant=variant)
path = out / f"{tag}.pt"; save_decoder(path, dec, summ)
res = {"tag": tag, "layer": alias, "steps": steps, "variant": variant, "p": p_inf, "extra": extra, "s_per_step": round(dt / steps, 3),
       "skill": round(g["recon_skill"], 3), "area": round(g["conf_area"], 3), "std": round(g["conf_image_std"], 3)}
pp = dict(params); pp["p"] = p_inf
for pv in sorted({p_inf, 95}):
    pp = {**params, "p": pv}
    a, per = score(explainer_from_params("scan", model, spec, pp, decoder_path=path))
    np.save(out / f"{tag}_p{pv}.npy", per); res[f"auc_d_p{pv}"] = round(a, 2)
    for m in ("centre", "gradcam"):
        f = out / f"{m}.npy"
        if f.exists():
            lo, hi = paired_bootstrap_ci(per, np.load(f)); res[f"p{pv}_minus_{m}"] = [round(lo, 1), round(hi, 1)]
print(json.dumps(res), flush=True)
