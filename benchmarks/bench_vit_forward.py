"""Benchmark: per-image forward cost of the hybrid ViT (vit_hybrid_lite0) beside the ViT trained from pixels
(vit_tiny_convstem), one run, rounds alternating between the models so that both see the same load.

Measures, per model, ms per image of
  - the forward pass through PyTorch eager and through ONNX Runtime (the engine of every forward-only workload:
    perturbation tests, LIME, RISE), at batch 1 and at evaluate.batch_size;
  - the forward and backward pass to the input at evaluate.batch_size (the gradient methods' unit of work);
for the registry's models (random weights: the cost does not depend on them) and the hybrid at each resolution
that was a candidate (112, 128, 144, 160 px: 7 to 10 tokens a side; the registry's is marked). Speed is quoted as the
ratio to vit_tiny_convstem in the same run; milliseconds depend on the machine and its load.

    python benchmarks/bench_vit_forward.py --rounds 5
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import scanbench  # noqa: F401  before torch: OMP_WAIT_POLICY and the ISA pins only count if set before it loads

# isort: split
import torch

from scanbench.backbones import get_backbone
from scanbench.compute import resolve
from scanbench.config import load_params
from scanbench.engine import ForwardEngine, export_onnx
from scanbench.io import write_json, write_text

BASE = "vit_tiny_convstem"


def models(params: dict) -> dict:
    """name -> (TargetModel, input size): the registry's ViTs at the params' width and heads, hybrid candidates."""
    vit = params["targets"]["vit"]
    kw = {"num_classes": 10, "width": vit["width"], "heads": vit["heads"]}
    out = {}
    torch.manual_seed(0)
    base = get_backbone(BASE)
    out[f"{BASE} @{base.input_size}"] = (base.build(**kw), base.input_size)
    hybrid = get_backbone("vit_hybrid_lite0")
    for size in sorted({112, 128, 144, 160, hybrid.input_size}):
        spec = hybrid if size == hybrid.input_size else replace(hybrid, input_size=size, grid=size // 16)
        label = f"{hybrid.name} @{size}" + (" (registry)" if size == hybrid.input_size else "")
        out[label] = (spec.build(**kw), size)
    return out


def per_image_ms(fn, x: torch.Tensor, batch: int, loops: int = 2) -> float:
    start = time.perf_counter()
    for _ in range(loops):
        for i in range(0, len(x), batch):
            fn(x[i:i + batch])
    return (time.perf_counter() - start) * 1000 / (loops * len(x))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds (medians)")
    ap.add_argument("--n-images", type=int, default=32)
    ap.add_argument("--params", default="profiles/default.yaml")
    ap.add_argument("--out", default="reports/benchmarks")
    args = ap.parse_args()
    params = load_params(args.params)
    resolve(params)   # compute.threads (null: every core)
    bs = params["evaluate"]["batch_size"]
    gen = torch.Generator().manual_seed(0)
    tmp = Path(tempfile.mkdtemp(prefix="bench_vit_"))
    cases = {}
    for i, (name, (model, size)) in enumerate(models(params).items()):
        x = torch.rand(args.n_images, 3, size, size, generator=gen)
        path = export_onnx(model, tmp / f"m{i}.onnx", size)
        onnx = ForwardEngine(model, "onnx", path, batch_size=bs)

        def eager(b, model=model):
            with torch.inference_mode():
                return model(b)

        def backward(b, model=model):
            b = b.clone().requires_grad_(True)
            model(b).max(1).values.sum().backward()

        cases[name] = {"x": x, "fns": {"eager_batch1": (eager, 1), "eager_batched": (eager, bs),
                                       "onnx_batch1": (onnx, 1), "onnx_batched": (onnx, bs),
                                       "fwd_bwd_batched": (backward, bs)}}
        for fn, b in cases[name]["fns"].values():   # warm-up
            fn(x[:b])
    times = {name: {k: [] for k in c["fns"]} for name, c in cases.items()}
    for _ in range(args.rounds):
        for name, c in cases.items():
            for key, (fn, b) in c["fns"].items():
                n = 8 if b == 1 else len(c["x"])
                times[name][key].append(per_image_ms(fn, c["x"][:n], b))
    med = {name: {k: statistics.median(v) for k, v in t.items()} for name, t in times.items()}
    base = next(n for n in med if n.startswith(BASE))
    ratio = {name: {k: v / med[base][k] for k, v in m.items()} for name, m in med.items()}
    result = {"threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "batch_size": bs, "rounds": args.rounds, "n_images": args.n_images,
              "width": params["targets"]["vit"]["width"], "heads": params["targets"]["vit"]["heads"],
              "ms_per_image": med, "ratio_to_" + BASE: ratio}
    out = Path(args.out)
    write_json(out / "vit_forward.json", result)
    cols = [("eager_batch1", "eager b1"), ("eager_batched", f"eager b{bs}"), ("onnx_batch1", "ONNX b1"),
            ("onnx_batched", f"ONNX b{bs}"), ("fwd_bwd_batched", f"fwd+bwd b{bs}")]
    lines = [f"# ViT forward cost: the hybrid ViT beside {BASE} (one run)", "",
             f"`python benchmarks/bench_vit_forward.py --rounds {args.rounds}`; {torch.get_num_threads()} threads, "
             f"random weights (width {result['width']}, {result['heads']} heads), medians over {args.rounds} "
             f"alternating rounds. ms per image, and in brackets the ratio to {BASE} in the same run (machine "
             f"noise cancels in the ratios, not in the milliseconds). fwd+bwd: forward and backward to the input, "
             f"the gradient methods' unit of work.", "",
             "| model | " + " | ".join(c for _, c in cols) + " |", "|---|" + "---|" * len(cols)]
    for name in med:
        lines.append(f"| {name} | " + " | ".join(f"{med[name][k]:.2f} ({ratio[name][k]:.2f}x)" for k, _ in cols)
                     + " |")
    write_text(out / "vit_forward.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
