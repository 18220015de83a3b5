"""Issue-13 research probe (not a pipeline stage; quoted in the session-9 note): ms per step of train_decoder itself
over STEPS steps (no held-out scoring), to compare with the bare step (probe_step.py) and the train_scan stage's
average. Run from a checkout holding a default-profile run, PYTHONPATH=src.
usage: probe_td.py BACKBONE STEPS"""
import sys, time, torch
from scanbench.config import load_params
from scanbench.backbones import get_backbone
from scanbench.features import load_features
from scanbench.scan.train import train_decoder
from scanbench.compute import resolve
bb, steps = sys.argv[1], int(sys.argv[2])
p = load_params("params.yaml"); dev = resolve(p)
spec = get_backbone(bb); fs = load_features(f"features/{bb}/default/train")
a = time.perf_counter()
train_decoder(fs, None, spec, p, 4.0, steps=steps, progress=False, device=dev)
print(bb, f"{(time.perf_counter() - a) / steps * 1000:.1f} ms/step over {steps} steps (train_decoder, no holdout)")
