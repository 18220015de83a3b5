"""Learning-rate schedules of every training loop: SCAN's decoders, the ViT trained here, the head's probe and its
last-block fine-tuning. The loops set each optimiser step's rate themselves (`set_lr`), from the step's index.

    constant: the base rate throughout.
    cosine:   a linear warm-up over the first `warmup` steps (step s at (s + 1) / warmup of the base), then half a
              cosine from the base rate to 0 over the remaining steps (warmup 0: from the first step on).
"""
from __future__ import annotations

import math

from .errors import ScanbenchError

SCHEDULES = ("constant", "cosine")


def check_schedule(schedule: str, key: str) -> str:
    if schedule not in SCHEDULES:
        raise ScanbenchError(f"{key} must be {' or '.join(SCHEDULES)} (got {schedule!r})")
    return schedule


def two_percent_warmup(total: int) -> int:
    """SCAN's warm-up: 2% of the steps, at least one."""
    return max(1, total // 50)


def lr_at(step: int, total: int, base: float, schedule: str = "cosine", warmup: int = 0,
          progress_first: bool = False) -> float:
    """The rate of optimiser step `step` (0-based) of `total` steps (see the module's docstring).

    The cosine's angle is pi x elapsed / span; `progress_first` divides before multiplying by pi. The two differ in
    the last bit for some steps, and a last bit of the rate changes every weight after it, so each loop keeps the
    order its results depend on: the ViT's loop divides first, the others multiply first."""
    if schedule == "constant":
        return base
    if step < warmup:
        return base * (step + 1) / warmup
    elapsed, span = step - warmup, max(1, total - warmup)
    angle = math.pi * (elapsed / span) if progress_first else math.pi * elapsed / span
    return 0.5 * base * (1 + math.cos(angle))


def set_lr(optimizer, lr: float) -> None:
    """Set every parameter group's rate for the next optimiser step."""
    for group in optimizer.param_groups:
        group["lr"] = lr
