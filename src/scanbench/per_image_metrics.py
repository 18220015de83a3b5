"""The evaluate stage's per-image metrics, one declaration each: Drop% and Inc% (Chattopadhay et al., Grad-CAM++).

Each is a function of two numbers per image, Y and O: the softmax probability of the explained class on the image
and on map x image (in [0, 1] image space, before the model's normalisation), both from one forward pass
(scanbench.metrics.confidence). A declaration names the metric (its key in results/evaluate/B/M.json: the mean over
the images, and `per_image.<name>` the values in image order), says whether higher is better, and gives its
per-image function, its label and the definition the README prints. Scoring (`metrics.per_image_scores`), joining
the shards of a data-parallel run, the long results table, the report's columns and metric files and the README
all follow from `PER_IMAGE_METRICS`: a new metric is a declaration and its function here (then a new smoke
reference, since the CI comparison refuses a metric the reference lacks).

No torch and no metrics package: the report (and the timing stage, through the tables) reads the declarations alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# what every per-image function takes, as the README states it
INPUTS = "Y, O = softmax probability of the class on the image and on map x image"


@dataclass(frozen=True)
class PerImageMetric:
    name: str                                                    # its key in the evaluate JSON and the tables
    label: str                                                   # as the tables' notes and the README write it
    higher_is_better: bool
    per_image: Callable[[np.ndarray, np.ndarray], np.ndarray]    # (Y, O), N each -> N values
    definition: str                                              # the README's formula
    source: str = ""                                             # where it was defined, cited in the README


def drop(y: np.ndarray, o: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Percent of the class probability lost when only the map's share of the image is kept (0 where it rises)."""
    return np.maximum(0.0, y - o) / np.maximum(y, eps) * 100.0


def increase(y: np.ndarray, o: np.ndarray) -> np.ndarray:
    """100 where the class probability rises on map x image, else 0."""
    return (o > y).astype(np.float64) * 100.0


PER_IMAGE_METRICS = (
    PerImageMetric("drop", "Drop%", False, drop, "mean(max(0, Y - O) / Y) x 100", "Grad-CAM++"),
    PerImageMetric("inc", "Inc%", True, increase, "mean(O > Y) x 100", "Grad-CAM++"),
)
PER_IMAGE_NAMES = tuple(m.name for m in PER_IMAGE_METRICS)
