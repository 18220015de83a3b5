"""Benchmark: what the AVX2 pins of scanbench/__init__.py cost on this CPU, one run.

The pins are set before torch loads, so each setting runs in its own process; the two alternate over the rounds
(pinned, native, pinned, ...) and each process times the same workloads after a warm-up:
  - a SCAN decoder training step (the smoke/default CNN decoder shape, batch 8),
  - an EfficientNet-Lite0 forward + backward to a layer (what Grad-CAM and SCAN's masking cost), batch 8,
  - a tiny ViT training step (the default profile's ViT shape), batch 32.
Prints and writes reports/benchmarks/isa_pins.{json,md}: medians per setting and the ratio pinned / native.

    python benchmarks/bench_isa_pins.py [--rounds 3]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from scanbench import ISA_PINS

WORKER = r'''
import json, os, time, scanbench, torch
from scanbench.backbones import get_backbone
from scanbench.scan.decoder import build_decoder
torch.manual_seed(0)
torch.set_num_threads(os.cpu_count() or 1)   # every core, as compute.threads: null does
def med(fn, n=5):
    fn(); ts = []
    for _ in range(n):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return sorted(ts)[n // 2] * 1000
out = {"capability": torch.backends.cpu.get_cpu_capability()}
cnn = get_backbone("effnet_lite0")
params = {"scan": {"widths": {"cnn": [128, 96, 64, 32, 16, 8], "vit": [96, 64, 48, 32, 16]}, "vit_blocks": 4,
                   "vit_heads": 4}}
dec = build_decoder(cnn, (1280, 7, 7), params)
opt = torch.optim.Adam(dec.parameters(), 1e-3)
x = torch.randn(8, 1280, 7, 7)
def dec_step():
    out = dec(x); loss = out.square().mean(); opt.zero_grad(); loss.backward(); opt.step()
out["scan_decoder_step_ms"] = med(dec_step)
model = cnn.build(class_indices=list(range(10)), pretrained=False).eval()
imgs = torch.rand(8, 3, 224, 224, requires_grad=True)
def fwd_bwd():
    logits = model(imgs); torch.autograd.grad(logits[:, 0].sum(), imgs)
out["effnet_fwd_bwd_ms"] = med(fwd_bwd, 3)
vit_spec = get_backbone("vit_tiny_convstem")
vit = vit_spec.build(num_classes=10, width=192, heads=3).train()
vopt = torch.optim.AdamW(vit.parameters(), 1e-3)
vx = torch.rand(32, 3, vit_spec.input_size, vit_spec.input_size); vy = torch.randint(0, 10, (32,))
def vit_step():
    loss = torch.nn.functional.cross_entropy(vit(vx), vy); vopt.zero_grad(); loss.backward(); vopt.step()
out["vit_train_step_ms"] = med(vit_step, 3)
print(json.dumps(out))
'''


def run_worker(native: bool) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in (*ISA_PINS, "SCANBENCH_NATIVE_ISA")}
    if native:
        env["SCANBENCH_NATIVE_ISA"] = "1"
    res = subprocess.run([sys.executable, "-c", WORKER], env=env, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"pinned": [], "native": []}
    for _ in range(args.rounds):
        runs["pinned"].append(run_worker(native=False))
        runs["native"].append(run_worker(native=True))
    keys = [k for k in runs["pinned"][0] if k.endswith("_ms")]
    summary = {s: {"capability": r[0]["capability"], **{k: statistics.median(x[k] for x in r) for k in keys}}
               for s, r in runs.items()}
    ratios = {k: summary["pinned"][k] / summary["native"][k] for k in keys}
    from scanbench.io import write_json, write_text
    from scanbench.report.compare import machine_facts

    result = {"machine": machine_facts(), "rounds": args.rounds, "median_ms": summary, "pinned_over_native": ratios}
    write_json(args.out / "isa_pins.json", result)
    lines = [f"# AVX2 pins vs native ISA ({result['machine']['cpu']}, {args.rounds} alternating rounds, medians)", "",
             f"| workload | pinned ({summary['pinned']['capability']}) ms | native ({summary['native']['capability']}) "
             f"ms | pinned / native |", "|---|---|---|---|"]
    lines += [f"| {k[:-3]} | {summary['pinned'][k]:.1f} | {summary['native'][k]:.1f} | {ratios[k]:.2f}x |"
              for k in keys]
    write_text(args.out / "isa_pins.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
