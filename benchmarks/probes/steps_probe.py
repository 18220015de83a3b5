"""Issue-13 research probe (not a pipeline stage; its numbers are quoted in the issue note, not in reports/): the
main decoder of BACKBONE trained as `train_scan` trains it (params' scan section, alpha, seed, every training
image) but for STEPS optimiser steps, then its held-out reconstruction skill and confidence area at params' p, as
`diagnose_scan` measures them. The cosine schedule decays over STEPS, so this is "a shorter run", not a checkpoint
of the 4,500-step one. Run from a checkout holding a default-profile run (features/), PYTHONPATH=src.
usage: steps_probe.py BACKBONE STEPS"""
import json
import sys
import time

import torch

from scanbench.backbones import get_backbone
from scanbench.compute import available_cores
from scanbench.config import load_params
from scanbench.diagnostics import decoder_generalisation
from scanbench.features import load_features
from scanbench.scan.train import train_decoder

torch.set_num_threads(available_cores())
backbone, steps = sys.argv[1], int(sys.argv[2])
params = load_params("params.yaml")
spec = get_backbone(backbone)
train_set = load_features(f"features/{backbone}/default/train")
holdout_set = load_features(f"features/{backbone}/default/holdout")
start = time.perf_counter()
decoder, _, summary = train_decoder(train_set, holdout_set, spec, params, float(params["alpha"]), steps=steps,
                                    seed=int(params["seed"]), progress=False)
seconds = time.perf_counter() - start
held_out = decoder_generalisation(decoder, train_set, holdout_set, float(params["p"]))
print(json.dumps({"backbone": backbone, "steps": steps, "s_per_step": round(seconds / steps, 3),
                  "recon_skill": round(held_out["recon_skill"], 4), "conf_area": round(held_out["conf_area"], 4),
                  "conf_image_std": round(held_out["conf_image_std"], 4)}), flush=True)
