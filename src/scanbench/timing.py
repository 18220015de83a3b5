"""Per-image explanation time (SPEC §6, paper Table V): same process, warm, batch 1 and batched.

`time_explainer` is the measuring loop; `timing_summary` turns the per-image times of several methods
into the record of results/timing/B.json (median, IQR, ratio to Grad-CAM's batch-1 median).
"""
from __future__ import annotations

import os
import platform
import time
from typing import Mapping

import numpy as np
import torch

from .errors import ScanbenchError


def time_explainer(explainer, images01: torch.Tensor, classes: torch.Tensor, batch_size: int = 1,
                   warmup: bool = True) -> list[float]:
    """Explain `images01` in consecutive batches of `batch_size`; returns, per batch, the wall time per
    image in ms (batch time / batch size; with batch_size 1, one entry per image). One untimed warm-up
    call on the first batch first fills caches, allocators and lazy initialisation."""
    return time_explainers({"_": explainer}, images01, classes, batch_size, warmup=warmup)["_"]


def time_explainers(explainers: Mapping[str, object], images01: torch.Tensor, classes: torch.Tensor,
                    batch_size: int = 1, n_images: Mapping[str, int] | None = None,
                    warmup: bool = True) -> dict[str, list[float]]:
    """`time_explainer` for several methods, interleaved: batch k of every method, then batch k + 1, ...
    so that all methods see the same machine (a shared box drifts over minutes; timing one method's images
    in a block and then the next's let that drift into their ratios). The order rotates by one method per
    batch, so that no method always follows the same one (ONNX Runtime's threads spin for a while after a
    run, and caches hold the previous method's data). `n_images[m]` caps method m to the first images
    (default: all). Returns {method: ms per image of each of its batches}."""
    if batch_size < 1:
        raise ScanbenchError(f"timing.batch_size must be >= 1 (got {batch_size})")
    classes = torch.as_tensor(classes, dtype=torch.long).view(-1)
    limit = {m: min(images01.shape[0], int((n_images or {}).get(m, images01.shape[0]))) for m in explainers}
    if warmup:
        for m, explainer in explainers.items():
            explainer.explain(images01[:min(batch_size, limit[m])], classes[:min(batch_size, limit[m])])
    out: dict[str, list[float]] = {m: [] for m in explainers}
    names = list(explainers)
    for k, i in enumerate(range(0, max(limit.values(), default=0), batch_size)):
        for m in names[k % len(names):] + names[:k % len(names)]:
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


def device_description() -> str:
    """CPU model (or GPU name), core count and torch threads: what the times were measured on."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)} (CUDA), torch {torch.__version__}"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"
