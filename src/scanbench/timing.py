"""Per-image explanation time (docs/METHODS.md §3, paper Table V): same process, warm, batch 1 and batched.

`time_explainer(s)` is the measuring loop; `timing_summary` turns the per-image times of several methods
into the record of reports/timing/B.json (median, IQR, ratio to Grad-CAM's batch-1 median); `measure_methods`
is the whole measurement (both batch sizes, caps, summary) that the timing stage and benchmarks/bench_forward.py
both run, on the images `timing_indices` names, so the two cannot disagree by construction.
"""
from __future__ import annotations

import os
import platform
import time
from typing import Mapping

import numpy as np
import torch

from .errors import ScanbenchError


def timing_indices(manifest, params: Mapping) -> np.ndarray:
    """The manifest rows every timing measurement uses: the seeded `timing.n_images` validation images."""
    from .data import check_split_sizes, seeded_subset

    check_split_sizes(manifest, params)
    return seeded_subset(manifest, "val", params["timing"]["n_images"], params["seed"])


def timing_caps(timing_params: Mapping) -> dict[str, int]:
    """`timing.n_images_per_method` checked: {method: its image cap} (LIME and RISE cost seconds per image)."""
    caps = {m: int(n) for m, n in (timing_params.get("n_images_per_method") or {}).items()}
    for m, n in caps.items():
        if n < 1:
            raise ScanbenchError(f"timing.n_images_per_method.{m} must be >= 1 (got {n})")
    return caps


def measure_methods(explainers: Mapping[str, object], images01: torch.Tensor, classes: torch.Tensor,
                    timing_params: Mapping, seed: int = 0) -> dict[str, dict]:
    """Table V's measurement of these explainers: batch 1, then batched at `timing.batch_size`, each method capped
    by `timing.n_images_per_method`, interleaved in a seeded random order; returns `timing_summary`'s record."""
    caps = timing_caps(timing_params)
    batch1 = time_explainers(explainers, images01, classes, 1, n_images=caps, seed=seed)
    batched = time_explainers(explainers, images01, classes, int(timing_params["batch_size"]), n_images=caps,
                              seed=seed + 1)
    return timing_summary(batch1, batched)


def time_explainer(explainer, images01: torch.Tensor, classes: torch.Tensor, batch_size: int = 1,
                   warmup: bool = True) -> list[float]:
    """Explain `images01` in consecutive batches of `batch_size`; returns, per batch, the wall time per
    image in ms (batch time / batch size; with batch_size 1, one entry per image). One untimed warm-up
    call on the first batch first fills caches, allocators and lazy initialisation."""
    return time_explainers({"_": explainer}, images01, classes, batch_size, warmup=warmup)["_"]


def time_explainers(explainers: Mapping[str, object], images01: torch.Tensor, classes: torch.Tensor,
                    batch_size: int = 1, n_images: Mapping[str, int] | None = None,
                    warmup: bool = True, seed: int = 0) -> dict[str, list[float]]:
    """`time_explainer` for several methods, interleaved: batch k of every method, then batch k + 1, ...
    so that all methods see the same machine (a shared box drifts over minutes; timing one method's images
    in a block and then the next's let that drift into their ratios). Each batch's order is a fresh random
    permutation (np.random.Generator(seed)), so that no method always follows the same one: what ran just
    before a method (another engine's threads, the caches) is part of its time. A rotation is not enough: it
    keeps every method's cyclic neighbour, and SCAN always ran right after RISE
    (reports/benchmarks/timing_agreement.md). `n_images[m]` caps method m to the first images (default: all).
    Returns {method: ms per image of each of its batches}."""
    if batch_size < 1:
        raise ScanbenchError(f"timing.batch_size must be >= 1 (got {batch_size})")
    classes = torch.as_tensor(classes, dtype=torch.long).view(-1)
    limit = {m: min(images01.shape[0], int((n_images or {}).get(m, images01.shape[0]))) for m in explainers}
    if warmup:
        for m, explainer in explainers.items():
            explainer.explain(images01[:min(batch_size, limit[m])], classes[:min(batch_size, limit[m])])
    out: dict[str, list[float]] = {m: [] for m in explainers}
    names = list(explainers)
    rng = np.random.default_rng(seed)
    for i in range(0, max(limit.values(), default=0), batch_size):
        for m in [names[j] for j in rng.permutation(len(names))]:
            if i >= limit[m]:
                continue
            end = min(i + batch_size, limit[m])
            x, c = images01[i:end], classes[i:end]
            start = time.perf_counter()
            explainers[m].explain(x, c)
            out[m].append((time.perf_counter() - start) * 1000.0 / x.shape[0])
    return out


def timing_summary(batch1_ms: Mapping[str, list[float]], batched_ms: Mapping[str, list[float]],
                   reference: str = "gradcam") -> dict[str, dict]:
    """{method: {ms_per_image, ms_iqr, n_images, ms_per_image_batched, ratio_to_gradcam}}; the ratio is to the
    reference's batch-1 median (None when the reference was not timed)."""
    ref = float(np.median(batch1_ms[reference])) if reference in batch1_ms else None
    out = {}
    for m, times in batch1_ms.items():
        med = float(np.median(times))
        q1, q3 = np.percentile(times, [25, 75])
        out[m] = {"ms_per_image": med, "ms_iqr": [float(q1), float(q3)], "n_images": len(times),
                  "ms_per_image_batched": float(np.median(batched_ms[m])) if m in batched_ms else None,
                  "ratio_to_gradcam": med / ref if ref else None}
    return out


def device_description(device: torch.device | str | None = None) -> str:
    """CPU model (or GPU name), core count and torch threads: what the times were measured on (`device`: the
    stage's compute device; None: a GPU when there is one)."""
    if (torch.cuda.is_available() if device is None else torch.device(device).type == "cuda"):
        name = torch.cuda.get_device_name(None if device is None else torch.device(device))
        return f"{name} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
