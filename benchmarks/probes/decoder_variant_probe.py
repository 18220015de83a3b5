"""Issue-13 research probe (not a pipeline stage): held-out skill of one decoder variant at a given step count, on
a default-profile run's features. E.g. the gradient mask's cost on EfficientNet:
    PYTHONPATH=src python benchmarks/probes/decoder_variant_probe.py effnet_lite0 1500 cosine all '{"variant": "no_mask"}'
(args: backbone, steps, lr schedule, n_train or all, JSON of variant / scan.* overrides)."""
import sys, time, json, torch
from pathlib import Path
from scanbench.backbones import get_backbone
from scanbench.config import load_params
from scanbench.features import load_features
from scanbench.scan.train import train_decoder
from scanbench.diagnostics import decoder_generalisation
from scanbench.compute import available_cores  # noqa: E402
torch.set_num_threads(available_cores())
b, steps, sched = sys.argv[1], int(sys.argv[2]), sys.argv[3]
n_train = None if len(sys.argv) < 5 or sys.argv[4] == "all" else int(sys.argv[4])
extra = json.loads(sys.argv[5]) if len(sys.argv) > 5 else {}
params = load_params("params.yaml"); params["scan"]["lr_schedule"] = sched
spec = get_backbone(b)
tr, ho = load_features(f"features/{b}/default/train"), load_features(f"features/{b}/default/holdout")
t = time.perf_counter()
variant = extra.pop("variant", "full"); params["scan"].update(extra)
dec, curves, summ = train_decoder(tr, ho, spec, params, float(params["alpha"]), variant=variant, steps=steps, n_train=n_train, progress=False)
dt = time.perf_counter() - t
g = decoder_generalisation(dec, tr, ho, 95, variant=variant)
print(json.dumps({"b": b, "steps": steps, "sched": sched, "n": summ["n_train"], "extra": extra, "s_per_step": round(dt/steps, 4),
  "skill": round(g["recon_skill"], 3), "area": round(g["conf_area"], 3), "std": round(g["conf_image_std"], 3),
  "train_err": round(g["train_recon_err"], 4), "err": round(g["recon_err"], 4)}), flush=True)
torch.save(dec.state_dict(), f"/tmp/{b}_{steps}_{sched}_{variant}.pt")
