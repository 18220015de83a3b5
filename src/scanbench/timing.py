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
    if batch_size < 1:
        raise ScanbenchError(f"timing.batch_size must be >= 1 (got {batch_size})")
    classes = torch.as_tensor(classes, dtype=torch.long).view(-1)
    if warmup:
        explainer.explain(images01[:batch_size], classes[:batch_size])
    out = []
    for i in range(0, images01.shape[0], batch_size):
        x, c = images01[i:i + batch_size], classes[i:i + batch_size]
        start = time.perf_counter()
        explainer.explain(x, c)
        out.append((time.perf_counter() - start) * 1000.0 / x.shape[0])
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
