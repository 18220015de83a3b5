"""Dataset indexing (the manifest), image loading and seeded subsets.

Images enter every model as float tensors in [0, 1] (B x 3 x H x W); each target model normalises
internally, so perturbations ("black" = 0) and Drop/Inc products happen in image space.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .errors import ScanbenchError

if TYPE_CHECKING:   # torch is imported where used: `prepare` needs none of it (~1.8 s of its start-up)
    import torch

IMAGE_EXTENSIONS = {".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
# Smallest accepted image side: below it an image is mostly interpolation once resized to a model's input
# (64-224 px), and a 1 x 1 "image" is a broken file rather than a photo (docs/DECISIONS.md).
MIN_IMAGE_SIDE = 32
MANIFEST_COLUMNS = ["path", "label", "split", "class_name", "wnid", "imagenet_index", "converted"]


def imagenet_wnid_index() -> dict[str, tuple[int, str]]:
    """wnid -> (ImageNet-1k index, readable name), from timm's bundled ImageNet metadata (offline).

    Read as timm.data.ImageNetInfo reads it (its synset list and the first lemma of each synset; a test checks the
    two agree) but without importing timm, which pulls torchvision and torch._dynamo (~2.5 s of `prepare`)."""
    import csv
    import importlib.util

    spec = importlib.util.find_spec("timm")    # locates the package without running it
    if spec is None or not spec.submodule_search_locations:
        raise ScanbenchError("timm is not installed: pip install -e . (it ships the ImageNet class list)")
    info = Path(list(spec.submodule_search_locations)[0]) / "data" / "_info"
    synsets = (info / "imagenet_synsets.txt").read_text(encoding="utf-8").splitlines()
    lemmas = dict(csv.reader((info / "imagenet_synset_to_lemma.txt").read_text(encoding="utf-8").splitlines(),
                             delimiter="\t"))
    return {wnid: (idx, lemmas[wnid].split(",")[0].strip()) for idx, wnid in enumerate(synsets)}


def _high_depth_to_8bit(img: Image.Image) -> Image.Image:
    """A 16-bit (I;16*), 32-bit integer (I) or float (F) grey image as 8-bit RGB, scaled rather than clipped.

    PIL's convert("RGB") clips these at 255, so a 16-bit PNG turns (almost) all white. Scaling by bit depth:
    I;16* and I hold 16-bit values (PNG/TIFF 16-bit) -> v / 257; an I image whose values all fit 8 bits is 8-bit
    already; F holds [0, 1] -> v * 255 (beyond that range it is treated as 16-bit). Never a per-image stretch."""
    arr = np.asarray(img, dtype=np.float64)
    if img.mode == "F" and arr.size and np.nanmin(arr) >= 0 and np.nanmax(arr) <= 1:
        arr = arr * 255.0
    elif not img.mode.startswith("I;16") and arr.size and np.nanmax(arr) <= 255 and np.nanmin(arr) >= 0:
        pass
    else:
        arr = arr / 257.0
    grey = np.clip(np.nan_to_num(np.rint(arr)), 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def open_rgb(path: str | Path) -> tuple[Image.Image, bool]:
    """Open an image as RGB; returns (image, converted) where converted says it was not RGB on disk."""
    with Image.open(path) as img:
        img.load()
        converted = img.mode != "RGB"
        if img.mode in ("I", "F") or img.mode.startswith("I;16"):
            return _high_depth_to_8bit(img), converted
        return (img.convert("RGB") if converted else img.copy()), converted


def check_classes(root: Path, split: str, classes: Sequence[str]) -> None:
    """At least 2 classes; else one line naming the folders. Folders that are not ImageNet wnids are the data's own
    classes (imagenet_index -1): the `head` stage fits a head for them (scanbench.head)."""
    if len(classes) < 2:
        raise ScanbenchError(f"data root {root} has {len(classes)} class folder ({', '.join(classes)}) under "
                             f"{split}/: a benchmark needs at least 2 classes (with one, top-1 is 100% and every "
                             f"AUC-D 0); set data.root to a tree with 2 or more")


@dataclass
class IndexReport:
    n_images: int
    n_converted: int
    unreadable: list[tuple[str, str]]


def build_manifest(root: str | Path, splits: Sequence[str] = ("train", "val"),
                   check_images: bool = True, limit_per_class: int | None = None) -> tuple[pd.DataFrame, IndexReport]:
    """Index an ImageFolder tree root/<split>/<class>/<image> into a manifest.

    Classes are the sorted folder names of the first split, at least 2 (`check_classes`); `label` is the class's
    index among them (0..K-1), `imagenet_index` its ImageNet-1k index when the folder is a wnid, else -1 (the
    `head` stage then fits a head over the data's classes). Unreadable files are reported and skipped, never fatal;
    with `check_images`, images with a side under MIN_IMAGE_SIDE px are refused (naming the first ones).
    `limit_per_class` keeps the first N readable images of each class and split (the smoke profile).
    """
    root = Path(root)
    if not root.is_dir():
        raise ScanbenchError(f"data root {root} does not exist: set data.root in params.yaml")
    split_dirs = [root / s for s in splits]
    missing = [str(d) for d in split_dirs if not d.is_dir()]
    if missing:
        raise ScanbenchError(f"data root {root} lacks split folder(s) {', '.join(missing)}: set data.root "
                             f"to an ImageFolder tree with {'/'.join(splits)} sub-folders")
    classes = sorted(p.name for p in split_dirs[0].iterdir() if p.is_dir())
    if not classes:
        raise ScanbenchError(f"data root {root} has no class folders under {splits[0]}/: set data.root")
    wnids = imagenet_wnid_index()
    check_classes(root, splits[0], classes)
    rows, unreadable, n_converted, tiny = [], [], 0, []
    for split in splits:
        for label, cls in enumerate(classes):
            cdir = root / split / cls
            if not cdir.is_dir():
                continue
            kept = 0
            for f in sorted(cdir.iterdir()):
                if f.suffix.lower() not in IMAGE_EXTENSIONS:
                    continue
                if limit_per_class is not None and kept >= limit_per_class:
                    break
                converted = False
                if check_images:
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore")
                            with Image.open(f) as img:
                                img.verify()
                            with Image.open(f) as img:
                                img.load()
                                converted = img.mode != "RGB"
                                size = img.size
                    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
                        unreadable.append((str(f.relative_to(root)), f"{type(err).__name__}: {err}"))
                        continue
                    if min(size) < MIN_IMAGE_SIDE:
                        tiny.append(f"{f.relative_to(root)} ({size[0]} x {size[1]} px)")
                n_converted += converted
                kept += 1
                idx, name = wnids.get(cls, (-1, cls))
                rows.append({"path": str(f.relative_to(root)), "label": label, "split": split,
                             "class_name": name, "wnid": cls, "imagenet_index": idx, "converted": converted})
    if tiny:
        shown = ", ".join(tiny[:3]) + (f" and {len(tiny) - 3} more" if len(tiny) > 3 else "")
        raise ScanbenchError(f"{len(tiny)} image(s) under {root} have a side below the {MIN_IMAGE_SIDE} px "
                             f"minimum: {shown}; remove or replace them")
    if not rows:
        raise ScanbenchError(f"data root {root} holds no readable images: set data.root")
    df = pd.DataFrame(rows, columns=MANIFEST_COLUMNS)
    return df, IndexReport(len(df), n_converted, unreadable)


def load_manifest(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise ScanbenchError(f"manifest {path} not found: run `dvc repro prepare` first")
    return pd.read_csv(path)


def class_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """One row per class label: label, wnid, class_name, imagenet_index (sorted by label)."""
    return (manifest[["label", "wnid", "class_name", "imagenet_index"]]
            .drop_duplicates("label").sort_values("label").reset_index(drop=True))


def load_image(path: str | Path, size: int) -> torch.Tensor:
    """Read one image as a 3 x size x size float tensor in [0, 1] (grayscale/CMYK converted to RGB)."""
    import torch

    try:
        img, _ = open_rgb(path)
    except (UnidentifiedImageError, OSError) as err:
        raise ScanbenchError(f"cannot read image {path}: {err}") from err
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC if size > min(img.size) else Image.LANCZOS)
    arr = np.asarray(img, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def load_images(root: str | Path, rel_paths: Iterable[str], size: int) -> torch.Tensor:
    import torch

    root = Path(root)
    return torch.stack([load_image(root / p, size) for p in rel_paths])


def to_uint8(images01: torch.Tensor) -> np.ndarray:
    import torch

    return (images01.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()


def from_uint8(arr: np.ndarray) -> torch.Tensor:
    import torch

    return torch.from_numpy(np.ascontiguousarray(arr)).float().div_(255.0)


def seeded_subset(manifest: pd.DataFrame, split: str, n: int | None, seed: int,
                  exclude: Iterable[int] = ()) -> np.ndarray:
    """Row indices of a fixed random subset of a split (n=None: all), sorted for stable order."""
    idx = np.flatnonzero((manifest["split"] == split).to_numpy())
    exclude = set(int(i) for i in exclude)
    idx = np.array([i for i in idx if i not in exclude], dtype=np.int64)
    if n is None or n >= len(idx):
        return idx
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(idx, size=n, replace=False))


def check_split_sizes(manifest: pd.DataFrame, params: dict) -> None:
    """The image counts drawn from the val split fit it (config.check_image_counts checks the rest): the
    evaluation images (explain.n_images) and the disjoint held-out images (features.n_holdout) together, and the
    timing images; else one line naming the param."""
    n_val = int((manifest["split"] == "val").sum())
    n_eval = params.get("explain", {}).get("n_images")
    if isinstance(n_eval, int):
        if n_eval >= n_val:
            raise ScanbenchError(f"explain.n_images = {n_eval} must be below the {n_val} images of the val split "
                                 f"(the held-out images, features.n_holdout, come from the rest)")
        n_hold = params.get("features", {}).get("n_holdout")
        if isinstance(n_hold, int) and n_eval + n_hold > n_val:
            raise ScanbenchError(f"features.n_holdout + explain.n_images = {n_hold} + {n_eval} exceeds the {n_val} "
                                 f"images of the val split (they are disjoint): lower one of them")
    n_timing = params.get("timing", {}).get("n_images")
    if isinstance(n_timing, int) and n_timing > n_val:
        raise ScanbenchError(f"timing.n_images = {n_timing} exceeds the {n_val} images of the val split: lower it")


def eval_indices(manifest: pd.DataFrame, params: dict) -> np.ndarray:
    """The evaluation images (val split), the same for every method and backbone."""
    check_split_sizes(manifest, params)
    return seeded_subset(manifest, "val", params["explain"]["n_images"], params["seed"])


def holdout_indices(manifest: pd.DataFrame, params: dict) -> np.ndarray:
    """Val images for held-out decoder checks, disjoint from the evaluation images."""
    return seeded_subset(manifest, "val", params["features"]["n_holdout"], params["seed"] + 1,
                         exclude=eval_indices(manifest, params))


def scan_train_indices(manifest: pd.DataFrame, params: dict) -> np.ndarray:
    return seeded_subset(manifest, "train", params["features"]["n_train"], params["seed"])
