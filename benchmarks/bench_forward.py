"""Benchmark: forward-only throughput and per-image explanation time, one run, same images.

Measures, on the same real validation images:
  1. the forward limit of each engine (PyTorch eager, eager + channels_last, ONNX Runtime), batch 1 and batched;
  2. our perturbation test (vectorised, through the ONNX engine) in image-steps per second;
  3. a straightforward per-image, per-step eager loop (as in Chefer et al.'s reference code);
  4. the per-image time of every explainer: the timing stage's own measurement (`scanbench.timing.measure_methods`
     on the stage's images, `timing_indices`, at its batch sizes and caps), so Table V and this file agree.
Writes reports/benchmarks/forward_<backbone>.json and .md. Speed is only quoted as ratios measured in this one run.

    python benchmarks/bench_forward.py --backbone effnet_lite0 --n-images 16
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import scanbench  # noqa: F401  before torch: OMP_WAIT_POLICY and the ISA pins only count if set before it loads

# isort: split
import numpy as np
import torch

from scanbench.backbones import get_backbone, load_target
from scanbench.compute import resolve
from scanbench.config import data_root, load_params
from scanbench.data import eval_indices, load_images, load_manifest
from scanbench.engine import ForwardEngine
from scanbench.explainers.base import methods_for
from scanbench.explainers.factory import explainer_from_params
from scanbench.io import write_json, write_text
from scanbench.metrics.perturbation import perturbation_correct, removal_counts, removal_rank
from scanbench.scan.train import scan_decoder_path
from scanbench.timing import measure_methods, timing_indices


def forward_ms(fn, x: torch.Tensor, batch: int, repeats: int = 3) -> float:
    """Median ms per image of fn over x in batches of `batch` (after one warm-up batch)."""
    fn(x[:batch])
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(x), batch):
            fn(x[i:i + batch])
        times.append((time.perf_counter() - start) * 1000 / len(x))
    return statistics.median(times)


def eager_loop(model, images, maps, labels, fractions) -> tuple[np.ndarray, float]:
    """Per image, per step, per order: perturb one copy and run it alone (the reference-code manner)."""
    n, _, h, w = images.shape
    counts = removal_counts(fractions, h * w)
    correct = np.zeros((2, n, len(fractions)), dtype=bool)
    start = time.perf_counter()
    with torch.inference_mode():
        for o, order in enumerate(("pos", "neg")):
            rank = removal_rank(maps, order)
            for i in range(n):
                for s, k in enumerate(counts):
                    x = images[i:i + 1].clone()
                    drop = (rank[i] < k).view(1, 1, h, w)
                    x = x.masked_fill(drop, 0.0)
                    correct[o, i, s] = model(x).argmax(1).item() == int(labels[i])
    return correct, time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--backbone", default="effnet_lite0")
    ap.add_argument("--n-images", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3,
                    help="rounds of ours, the engine limit and the eager loop (medians)")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--out", default="reports/benchmarks")
    args = ap.parse_args()
    params = load_params(args.params)
    resolve(params)   # compute.threads (null: every core)
    spec = get_backbone(args.backbone)
    manifest = load_manifest("data/manifest.csv")
    idx = eval_indices(manifest, params)[: args.n_images]
    images = load_images(data_root(params), manifest["path"].to_numpy()[idx], spec.input_size)
    labels = torch.from_numpy(manifest["label"].to_numpy()[idx])
    model = load_target(spec.name, f"models/targets/{spec.name}/model.pt")
    onnx_path = f"models/targets/{spec.name}/model.onnx"
    fractions = params["evaluate"]["fractions"]
    bs = params["evaluate"]["batch_size"]

    eager = ForwardEngine(model, "torch", batch_size=bs)
    onnx = ForwardEngine(model, "onnx", onnx_path, batch_size=bs)

    def plain_eager(x):
        with torch.inference_mode():
            return model(x)

    engines = {"pytorch eager": plain_eager, "pytorch eager, channels_last": eager, "onnx runtime": onnx}
    # The limit at the batch size the perturbation test uses (evaluate.batch_size): enough copies for whole batches.
    reps = -(-bs // len(images))
    pool = images.repeat(reps, 1, 1, 1)[: max(bs, len(images))]
    fwd = {name: {"batch1_ms": forward_ms(fn, images, 1), "batched_ms": forward_ms(fn, pool, bs)}
           for name, fn in engines.items()}
    fastest = min(fwd, key=lambda k: min(fwd[k].values()))

    maps = torch.rand(len(images), spec.input_size, spec.input_size, generator=torch.Generator().manual_seed(0))
    # Count what the model actually runs: the unperturbed image once, then each order's non-zero steps
    # (19 passes per image for fractions 0, 0.1, ..., 0.9): the only fair comparison with the forward limit.
    counts = removal_counts(fractions, spec.input_size ** 2)
    image_steps = len(images) * (1 + 2 * sum(1 for k in counts if k > 0))
    perturbation_correct(onnx, images[:2], maps[:2], labels[:2], fractions)  # warm-up
    # Ours against the engine's limit on the same number of forward passes, at the same batch size, and
    # against the eager loop: the three alternated in each round so that all see the same load on a shared
    # machine; medians of `repeats` rounds.
    same_work = images.repeat(-(-image_steps // len(images)), 1, 1, 1)[:image_steps]
    ours_times, limit_times, loop_times = [], [], []
    for _ in range(args.repeats):
        start = time.perf_counter()
        ours = perturbation_correct(onnx, images, maps, labels, fractions)
        ours_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        engines[fastest](same_work)
        limit_times.append(time.perf_counter() - start)
        loop_correct, seconds = eager_loop(model, images, maps, labels, fractions)
        loop_times.append(seconds)
    ours_s, limit_s, loop_s = (statistics.median(t) for t in (ours_times, limit_times, loop_times))
    loop_passes = 2 * len(images) * len(fractions)   # the loop runs every step of both orders, step 0 twice
    agree = bool(np.array_equal(ours.pos, loop_correct[0]) and np.array_equal(ours.neg, loop_correct[1]))

    # explanation time: exactly the timing stage's measurement (its images, batch sizes, caps, order, summary)
    t_idx = timing_indices(manifest, params)
    t_images = load_images(data_root(params), manifest["path"].to_numpy()[t_idx], spec.input_size)
    t_classes = onnx.predict(t_images)
    explainers = {method: explainer_from_params(method, model, spec, params, engine=onnx,
                                                decoder_path=scan_decoder_path(spec.name))
                  for method in methods_for(spec.family, params["timing"]["methods"])}
    timed = measure_methods(explainers, t_images, t_classes, params["timing"], seed=params["seed"])
    explain_ms = {m: r["ms_per_image"] for m, r in timed.items()}
    gradcam = explain_ms.get("gradcam")

    ours_ips = image_steps / ours_s
    limit_ips = image_steps / limit_s   # the fastest engine on the same passes
    loop_ips = loop_passes / loop_s
    # the same work (one perturbation test of these images), per second: the speed-up a user sees
    speedup = loop_s / ours_s
    result = {"backbone": spec.name, "n_images": len(images), "threads": torch.get_num_threads(),
              "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              "forward": fwd, "fastest_engine": fastest,
              "perturbation": {"ours_img_steps_per_s": ours_ips, "eager_loop_img_steps_per_s": loop_ips,
                               "fastest_forward_img_per_s": limit_ips, "share_of_forward_limit": ours_ips / limit_ips,
                               "speedup_vs_eager_loop": speedup,
                               "ours_seconds": ours_s, "eager_loop_seconds": loop_s, "same_correctness_as_loop": agree},
              "explain_n_images": len(t_images), "explain_ms_per_image": explain_ms,
              "explain_ms_per_image_batched": {m: r["ms_per_image_batched"] for m, r in timed.items()},
              "explain_ratio_to_gradcam": {m: v / gradcam for m, v in explain_ms.items()} if gradcam else {}}
    out = Path(args.out)
    write_json(out / f"forward_{spec.name}.json", result)
    lines = [f"# Forward-only benchmark: {spec.name}, {len(images)} images, {torch.get_num_threads()} threads", "",
             "| engine | batch 1 ms/img | batch %d ms/img |" % bs, "|---|---|---|"]
    lines += [f"| {k} | {v['batch1_ms']:.1f} | {v['batched_ms']:.1f} |" for k, v in fwd.items()]
    lines += ["", "| perturbation test | image-steps/s | vs fastest forward | vs eager loop |", "|---|---|---|---|",
              f"| ours (vectorised, onnx) | {ours_ips:.1f} | {ours_ips / limit_ips:.2f}x | {speedup:.2f}x |",
              f"| per-image per-step eager loop | {loop_ips:.1f} | {loop_ips / limit_ips:.2f}x | 1.00x |",
              f"| forward limit ({fastest}, same passes, batch {bs}) | {limit_ips:.1f} | 1.00x | |", "",
              f"Same correctness matrix as the loop: {agree}", "",
              f"Explanation time: the timing stage's measurement, {len(t_images)} timing images (LIME/RISE capped by "
              f"timing.n_images_per_method), seeded random interleaved order", "",
              f"| method | ms/image (batch 1, median) | ratio to Grad-CAM | "
              f"ms/image (batch {params['timing']['batch_size']}) |",
              "|---|---|---|---|"]
    lines += [f"| {m} | {v:.1f} | {result['explain_ratio_to_gradcam'].get(m, float('nan')):.2f} | "
              f"{timed[m]['ms_per_image_batched']:.1f} |" for m, v in explain_ms.items()]
    write_text(out / f"forward_{spec.name}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    import sys

    from scanbench.errors import ScanbenchError

    try:
        main()
    except ScanbenchError as err:   # e.g. no decoder yet: one line, as the stages do
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
