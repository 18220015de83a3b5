"""The maps files the `explain` stage writes (maps/<backbone>/<method>.npz), read back and checked before they are
scored: maps (float16 N x H x W in [0, 1]), indices (manifest rows), labels, classes (the explained class); and their
localisation against the `boxes` stage's object boxes."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .boxes import box_masks
from .errors import ScanbenchError
from .io import load_npz
from .metrics.localisation import localisation_scores

MAPS_KEYS = ("maps", "indices", "labels", "classes")


def explain_stage(backbone: str, family: str, method: str) -> str:
    """The stage that writes a backbone's maps of a method, as dvc.yaml names it (dvc.lock too, once it has run)."""
    return f"explain_scan@{backbone}" if method == "scan" else f"explain_{family}@{backbone}-{method}"


def load_maps(path: Path, stage: str = "explain") -> dict[str, np.ndarray]:
    if not path.exists():
        raise ScanbenchError(f"maps file {path} not found: run the explain stage first")
    z = load_npz(path, stage=stage)
    missing = set(MAPS_KEYS) - set(z)
    if missing:
        raise ScanbenchError(f"maps file {path} lacks {', '.join(sorted(missing))}: re-run the explain stage")
    return {k: z[k] for k in MAPS_KEYS}


def check_rows(z: dict[str, np.ndarray], manifest: pd.DataFrame, path: Path, manifest_path: Path) -> np.ndarray:
    """The maps' labels, checked against the manifest's rows they index (the maps of another manifest: one line)."""
    if z["indices"].max(initial=-1) >= len(manifest):
        raise ScanbenchError(f"{path} indexes rows beyond {manifest_path}: re-run the explain stage")
    labels = manifest["label"].to_numpy()[z["indices"]]
    if not np.array_equal(labels, z["labels"]):
        raise ScanbenchError(f"labels in {path} disagree with {manifest_path}: re-run the explain stage")
    return labels


def check_shape(z: dict[str, np.ndarray], size: int, path: Path) -> None:
    """One map per image, at the model's input size."""
    n = len(z["indices"])
    if z["maps"].shape != (n, size, size):
        raise ScanbenchError(f"maps in {path} have shape {tuple(z['maps'].shape)}, expected "
                             f"{n} x {size} x {size}: re-run the explain stage")


def box_localisation(boxes: pd.DataFrame, paths: list[str], indices: np.ndarray, maps: np.ndarray, size: int,
                     n_resamples: int, seed: int) -> dict | None:
    """The evaluate JSON's `localisation` object of the maps (N x size x size) of the images at `paths` (manifest
    rows `indices`), or None when the checked boxes (data/boxes.csv) hold no box at all (then it has no such key)."""
    if not len(boxes):
        return None
    return localisation_scores(maps, box_masks(boxes, paths, size), np.asarray(indices).astype(int).tolist(),
                               n_resamples, seed)
