"""Benchmark: why bench_forward.py and the timing stage disagreed on SCAN / Grad-CAM, and that they now agree.

Part 1, one process, the harnesses alternating over the rounds (a seeded random order per round), same models:
  - "bench_forward before": its old explanation timing: the first 8 evaluation images, every method (LIME and RISE
    too) on each, the interleaved order rotated by one method per image, ONNX Runtime threads spinning;
  - "bench_forward before, passive ONNX Runtime": the same with ONNX Runtime's threads waiting passively (the cause
    isolated: only the engine's spinning differs);
  - "timing stage before": the stage's old loop: its 32 timing images, LIME/RISE capped at 4, the same rotation and
    spinning;
  - "both now": `scanbench.timing.measure_methods`, what both run now (seeded random order per image, passive
    ONNX Runtime threads), on the stage's images.
Part 2, subprocesses alternating: SCAN and Grad-CAM timed with torch imported before scanbench (as bench_forward.py
did: OMP_WAIT_POLICY=PASSIVE then comes too late for libgomp, whose threads spin) vs after it.
Writes reports/benchmarks/timing_agreement.{json,md}: batch-1 medians and SCAN / Grad-CAM ratios of this one run.
`--load N` runs N background processes that each keep one core busy (1-thread matmuls, as another job on the shared
box would) for the whole run, and writes timing_agreement_load<N>.{json,md}: the effects above need such a job.

    python benchmarks/bench_timing_agreement.py [--backbone effnet_lite0] [--rounds 3] [--load 1]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ORDER_WORKER = r'''
import sys, json, statistics
if sys.argv[1] == "torch_first":
    import numpy, torch  # noqa: the old bench_forward.py import order
import scanbench  # noqa
import torch
from scanbench.backbones import get_backbone, load_target
from scanbench.compute import resolve
from scanbench.config import data_root, load_params
from scanbench.data import load_images, load_manifest
from scanbench.explainers.factory import explainer_from_params
from scanbench.scan.train import scan_decoder_path
from scanbench.timing import time_explainers, timing_indices
b, params = sys.argv[2], load_params(sys.argv[3])
resolve(params)
spec = get_backbone(b)
m = load_manifest("data/manifest.csv")
images = load_images(data_root(params), m["path"].to_numpy()[timing_indices(m, params)[:16]], spec.input_size)
model = load_target(b, f"models/targets/{b}/model.pt")
classes = torch.zeros(len(images), dtype=torch.long)
ex = {k: explainer_from_params(k, model, spec, params, decoder_path=scan_decoder_path(b)) for k in ("scan", "gradcam")}
t = time_explainers(ex, images, classes, 1, seed=params["seed"])
print(json.dumps({k: statistics.median(v) for k, v in t.items()}))
'''


HOG = "import torch, time\ntorch.set_num_threads(1)\nx = torch.rand(256, 256)\nwhile True:\n    x = (x @ x).tanh()\n"


def rotated_time_explainers(explainers, images01, classes, n_images=None):
    """The interleaved loop both used at first (batch 1): one warm-up call per method, then image k of every
    method, the order rotated by one method per image. A rotation keeps each method's cyclic neighbour."""
    limit = {m: min(len(images01), int((n_images or {}).get(m, len(images01)))) for m in explainers}
    for m, ex in explainers.items():
        ex.explain(images01[:1], classes[:1])
    out = {m: [] for m in explainers}
    names = list(explainers)
    for k in range(max(limit.values())):
        for m in names[k % len(names):] + names[:k % len(names)]:
            if k < limit[m]:
                start = time.perf_counter()
                explainers[m].explain(images01[k:k + 1], classes[k:k + 1])
                out[m].append((time.perf_counter() - start) * 1000.0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backbone", default="effnet_lite0")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    ap.add_argument("--load", type=int, default=0, help="background processes keeping a core busy each")
    args = ap.parse_args()
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(args.load)]
    try:
        run(args)
    finally:
        for h in hogs:
            h.kill()
            h.wait()


def run(args: argparse.Namespace) -> None:

    import numpy as np

    import scanbench  # noqa: F401  before torch

    # isort: split
    import torch

    from scanbench.backbones import get_backbone, load_target
    from scanbench.compute import resolve
    from scanbench.config import data_root, load_params
    from scanbench.data import eval_indices, load_images, load_manifest
    from scanbench.engine import ForwardEngine
    from scanbench.explainers.base import methods_for
    from scanbench.explainers.factory import explainer_from_params
    from scanbench.io import write_json, write_text
    from scanbench.report.compare import machine_facts
    from scanbench.scan.train import scan_decoder_path
    from scanbench.timing import measure_methods, timing_caps, timing_indices

    params = load_params(args.params)
    resolve(params)
    tp = params["timing"]
    spec = get_backbone(args.backbone)
    manifest = load_manifest("data/manifest.csv")
    root, paths = data_root(params), manifest["path"].to_numpy()
    model = load_target(spec.name, f"models/targets/{spec.name}/model.pt")
    onnx_path = f"models/targets/{spec.name}/model.onnx"
    bs = params["evaluate"]["batch_size"]
    engines = {spin: ForwardEngine(model, "onnx", onnx_path, batch_size=bs, spin=spin) for spin in (True, False)}
    methods = methods_for(spec.family, tp["methods"])
    explainers = {spin: {m: explainer_from_params(m, model, spec, params, engine=e,
                                                  decoder_path=scan_decoder_path(spec.name)) for m in methods}
                  for spin, e in engines.items()}
    bench_images = load_images(root, paths[eval_indices(manifest, params)[:8]], spec.input_size)
    stage_images = load_images(root, paths[timing_indices(manifest, params)], spec.input_size)
    bench_classes, stage_classes = engines[False].predict(bench_images), engines[False].predict(stage_images)

    harnesses = {
        "bench_forward before": lambda: {m: statistics.median(v) for m, v in rotated_time_explainers(
            explainers[True], bench_images, bench_classes).items()},
        "bench_forward before, passive ONNX Runtime": lambda: {m: statistics.median(v) for m, v in
                                                               rotated_time_explainers(explainers[False], bench_images,
                                                                                       bench_classes).items()},
        "timing stage before": lambda: {m: statistics.median(v) for m, v in rotated_time_explainers(
            explainers[True], stage_images, stage_classes, timing_caps(tp)).items()},
        "both now": lambda: {m: r["ms_per_image"] for m, r in measure_methods(
            explainers[False], stage_images, stage_classes, tp, seed=params["seed"]).items()},
    }
    rng = np.random.default_rng(params["seed"])
    runs: dict[str, list[dict]] = {h: [] for h in harnesses}
    for r in range(args.rounds):
        for h in [list(harnesses)[j] for j in rng.permutation(len(harnesses))]:
            runs[h].append(harnesses[h]())
            s, g = runs[h][-1]["scan"], runs[h][-1]["gradcam"]
            print(f"round {r} {h}: scan {s:.1f} ms, gradcam {g:.1f} ms, ratio {s / g:.2f}", flush=True)

    order_runs: dict[str, list[dict]] = {"torch_first": [], "scanbench_first": []}
    for r in range(args.rounds):
        for o in (("torch_first", "scanbench_first") if r % 2 == 0 else ("scanbench_first", "torch_first")):
            env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
            res = subprocess.run([sys.executable, "-c", ORDER_WORKER, o, spec.name, args.params], env=env,
                                 capture_output=True, text=True, check=True)
            order_runs[o].append(json.loads(res.stdout.strip().splitlines()[-1]))
            print(f"round {r} {o}: {order_runs[o][-1]}", flush=True)

    def summarise(rs: list[dict]) -> dict:
        return {"scan_ms": statistics.median(x["scan"] for x in rs),
                "gradcam_ms": statistics.median(x["gradcam"] for x in rs),
                "scan_over_gradcam": statistics.median(x["scan"] / x["gradcam"] for x in rs),
                "per_round_ratio": [x["scan"] / x["gradcam"] for x in rs]}

    summary = {h: summarise(rs) for h, rs in runs.items()}
    order = {o: summarise(rs) for o, rs in order_runs.items()}
    result = {"machine": machine_facts(), "backbone": spec.name, "rounds": args.rounds,
              "threads": torch.get_num_threads(), "background_load_processes": args.load,
              "load_average_at_end": os.getloadavg(), "harnesses": summary, "import_order": order,
              "all_methods_ms": runs}
    name = "timing_agreement" + (f"_load{args.load}" if args.load else "")
    write_json(args.out / f"{name}.json", result)
    fmt = lambda v: ", ".join(f"{x:.2f}" for x in v)  # noqa: E731
    lines = [f"# Timing agreement: {spec.name}, {result['machine']['cpu']}, "
             f"{torch.get_num_threads()} threads, {args.rounds} rounds, {args.load} background busy processes", "",
             "Written by `python benchmarks/bench_timing_agreement.py`. All numbers from this one run, harnesses "
             "alternating in a seeded random order per round; batch 1, ms per image, medians over rounds of each "
             "round's median. The machine is shared (load average at the end: "
             f"{', '.join(f'{x:.1f}' for x in result['load_average_at_end'])}): compare ratios, not milliseconds.", "",
             "## 1. The two harnesses, before and now (one process)", "",
             "| harness | SCAN ms | Grad-CAM ms | SCAN / Grad-CAM | per round |", "|---|---|---|---|---|"]
    lines += [f"| {h} | {v['scan_ms']:.1f} | {v['gradcam_ms']:.1f} | {v['scan_over_gradcam']:.2f}x | "
              f"{fmt(v['per_round_ratio'])} |" for h, v in summary.items()]
    lines += ["", "## 2. Import order (subprocesses, SCAN and Grad-CAM only, 16 timing images)", "",
              "| process | SCAN ms | Grad-CAM ms | SCAN / Grad-CAM | per round |", "|---|---|---|---|---|"]
    lines += [f"| {o.replace('_', ' ')} | {v['scan_ms']:.1f} | {v['gradcam_ms']:.1f} | {v['scan_over_gradcam']:.2f}x | "
              f"{fmt(v['per_round_ratio'])} |" for o, v in order.items()]
    lines += ["", "## Reading", "",
              "- bench_forward timed every method, LIME and RISE included, on each of 8 images, and the rotated order "
              "kept each method's cyclic neighbour: SCAN always ran right after RISE (then `random`, 1 ms), while "
              "ONNX Runtime's worker threads were still spinning on one of the 2 cores (the same loop with passive "
              "ONNX Runtime threads gives the stage's ratio). The timing stage caps LIME/RISE at 4 of 32 images, so "
              "28 of its 32 SCAN samples escaped that, and its median did too.",
              "- bench_forward imported torch before scanbench, so OMP_WAIT_POLICY=PASSIVE (set by scanbench) came "
              "after libgomp had read its environment: its OpenMP threads spun (its JSON still said PASSIVE).",
              "- Now: ONNX Runtime threads wait passively (`ForwardEngine(spin=False)`), each image's method "
              "order is a seeded random permutation, and bench_forward runs the stage's own `measure_methods` on "
              "the stage's images after importing scanbench first."]
    write_text(args.out / f"{name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
