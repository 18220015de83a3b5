"""Object boxes for the localisation metrics: the optional `boxes.csv` of a data root, checked, and boxes mapped
onto a map's pixels.

Convention (README "Localisation"): `<data root>/boxes.csv` (or the file params `data.boxes` names, relative to the
repo root: the smoke profile's hand-drawn profiles/smoke_boxes.csv, since the data root is shared read-only) with
the header `path,x0,y0,x1,y1`, one box per row, several rows per image allowed (their union is the object
region); `path` relative to the data root as in the manifest (`val/n01440764/x.JPEG`); coordinates in the image's own
pixels as pixel edges: (x0, y0) the top-left corner, (x1, y1) the bottom-right one, exclusive (pixel i spans [i, i +
1), as PIL's crop box), so
0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height. A VOC box (1-based, inclusive xmin..xmax) is x0 = xmin - 1,
x1 = xmax. Images without a row have no box and are skipped by the localisation metrics.

The `boxes` stage checks the file (`read_boxes`, one line naming the file and line on the first bad row) and writes
`data/boxes.csv` (`CHECKED_COLUMNS`: the image's width and height added), always, with the header only when the
data root has no boxes; `evaluate` reads that (`load_checked_boxes`) and builds one mask per image (`box_masks`).
No torch here: the `boxes` stage imports pandas and PIL only.
"""
from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image, UnidentifiedImageError

from .errors import ScanbenchError
from .io import atomic_path

BOXES_FILE = "boxes.csv"                       # in the data root, optional
BOX_COLUMNS = ["path", "x0", "y0", "x1", "y1"]
CHECKED_COLUMNS = ["path", "width", "height", "x0", "y0", "x1", "y1"]
COORDS = ("x0", "y0", "x1", "y1")
CONVENTION = ("a row is path,x0,y0,x1,y1: the image's path relative to the data root, then its box's corners in "
              "the image's own pixels, 0 <= x0 < x1 <= width, 0 <= y0 < y1 <= height")


def _empty() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object if c == "path" else (np.int64 if c in ("width", "height")
                                                                         else np.float64))
                         for c in CHECKED_COLUMNS})


def boxes_file(params: dict, root: str | Path) -> Path:
    """The boxes file to read: params `data.boxes` (relative to the repo root, i.e. the working directory; it must
    exist), else (null) the data root's optional `boxes.csv`."""
    named = (params.get("data") or {}).get("boxes")
    if named is None:
        return Path(root) / BOXES_FILE
    if not isinstance(named, str) or not named.strip():
        raise ScanbenchError(f"data.boxes = {named!r}: give a CSV file path (relative to the repo root) or null "
                             f"(the data root's {BOXES_FILE}, when it has one)")
    path = Path(named)
    if not path.is_file():
        raise ScanbenchError(f"data.boxes = {named}: no such file (relative to the repo root); fix the path or set "
                             f"data.boxes to null (the data root's {BOXES_FILE}, when it has one)")
    return path


def read_boxes(root: str | Path, manifest_paths: Sequence[str],
               path: str | Path | None = None) -> tuple[pd.DataFrame, int]:
    """The checked boxes of a data root (`CHECKED_COLUMNS`, rows in the file's order) and the number of rows
    skipped because their image exists but is not in the manifest (e.g. beyond `data.limit_per_class`).

    `path`: the boxes file (`boxes_file`; default `<root>/boxes.csv`); its image paths are relative to `root`.
    No such file: no rows. A bad file raises ScanbenchError naming the file, the line and the fix: a header other
    than path,x0,y0,x1,y1, a row with another number of fields, a coordinate that is not a finite number, x1 <= x0
    or y1 <= y0, a box outside the image, a path that names no image under the root."""
    root = Path(root)
    path = root / BOXES_FILE if path is None else Path(path)
    if not path.is_file():
        return _empty(), 0
    known = set(manifest_paths)
    sizes: dict[str, tuple[int, int]] = {}
    rows, skipped = [], 0
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise ScanbenchError(f"{path}: cannot read it ({err}); it must be a UTF-8 CSV file") from err
    reader = csv.reader(text.splitlines())
    header = None
    for line_no, fields in enumerate(reader, start=1):
        if not fields or all(not f.strip() for f in fields):
            continue                                   # blank lines are allowed
        fields = [f.strip() for f in fields]
        if header is None:
            header = fields
            if header != BOX_COLUMNS:
                raise ScanbenchError(f"{path} line {line_no}: header is {','.join(header)!r}, expected "
                                     f"'{','.join(BOX_COLUMNS)}' ({CONVENTION})")
            continue
        where = f"{path} line {line_no}"
        if len(fields) != len(BOX_COLUMNS):
            raise ScanbenchError(f"{where}: {len(fields)} fields, expected {len(BOX_COLUMNS)} ({CONVENTION})")
        rel, coords = fields[0], {}
        for name, raw in zip(COORDS, fields[1:]):
            try:
                v = float(raw)
            except ValueError:
                v = math.nan
            if not math.isfinite(v):
                raise ScanbenchError(f"{where}: {name} = {raw!r} is not a finite number ({CONVENTION})")
            coords[name] = v
        if not rel:
            raise ScanbenchError(f"{where}: empty path ({CONVENTION})")
        norm = os.path.normpath(rel)                   # ./val/x -> val/x, as the manifest writes it
        if os.path.isabs(rel) or norm == ".." or norm.startswith(".." + os.sep):
            raise ScanbenchError(f"{where}: path {rel!r} is not inside the data root (paths are relative to it, as "
                                 f"in data/manifest.csv, e.g. val/<wnid>/<file>)")
        rel = norm
        for lo, hi in (("x0", "x1"), ("y0", "y1")):
            if coords[hi] <= coords[lo]:
                raise ScanbenchError(f"{where}: {hi} = {fields[BOX_COLUMNS.index(hi)]} is not above {lo} = "
                                     f"{fields[BOX_COLUMNS.index(lo)]} ({CONVENTION})")
        if rel not in known:
            if (root / rel).is_file():
                skipped += 1                           # an image the manifest does not index: no box to score
                continue
            raise ScanbenchError(f"{where}: {rel!r} names no image under {root} (paths are relative to the data "
                                 f"root, as in data/manifest.csv, e.g. val/<wnid>/<file>)")
        if rel not in sizes:
            try:
                with Image.open(root / rel) as img:
                    sizes[rel] = img.size
            except (UnidentifiedImageError, OSError) as err:
                raise ScanbenchError(f"{where}: cannot read image {rel} ({err})") from err
        width, height = sizes[rel]
        if coords["x0"] < 0 or coords["y0"] < 0 or coords["x1"] > width or coords["y1"] > height:
            raise ScanbenchError(f"{where}: box ({fields[1]}, {fields[2]}, {fields[3]}, {fields[4]}) lies outside "
                                 f"the {width} x {height} px image {rel} ({CONVENTION})")
        rows.append({"path": rel, "width": width, "height": height, **coords})
    if header is None:
        raise ScanbenchError(f"{path} is empty: give it the header '{','.join(BOX_COLUMNS)}' and one row per box, or "
                             f"remove it")
    return (pd.DataFrame(rows, columns=CHECKED_COLUMNS) if rows else _empty()), skipped


def write_checked_boxes(boxes: pd.DataFrame, out: str | Path) -> None:
    """data/boxes.csv (CHECKED_COLUMNS; the header alone when there are no boxes), atomically; floats as repr, so
    the same boxes give the same bytes."""
    with atomic_path(out, suffix=".csv") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(CHECKED_COLUMNS)
            for r in boxes.itertuples(index=False):
                w.writerow([r.path, int(r.width), int(r.height), *(repr(float(getattr(r, c))) for c in COORDS)])


def load_checked_boxes(path: str | Path) -> pd.DataFrame:
    """data/boxes.csv as the `boxes` stage wrote it; a missing or damaged file is one line naming the stage."""
    path = Path(path)
    if not path.is_file():
        raise ScanbenchError(f"{path} not found: run the `boxes` stage (dvc repro boxes)")
    try:
        df = pd.read_csv(path, dtype={"path": str})
    except (ValueError, OSError) as err:
        raise ScanbenchError(f"{path} is unreadable ({err}): dvc repro -f boxes") from err
    if list(df.columns) != CHECKED_COLUMNS:
        raise ScanbenchError(f"{path} has columns {list(df.columns)}, expected {CHECKED_COLUMNS}: dvc repro -f boxes")
    return df


def box_mask(boxes: np.ndarray, width: int, height: int, size: int) -> np.ndarray:
    """size x size bool mask of the union of `boxes` (K x 4: x0, y0, x1, y1 in the width x height image's pixels)
    on the grid of the image resized to size x size, as `data.load_image` resizes it (the whole image squashed
    to a square, no crop: x scales by size / width, y by size / height; PIL samples output pixel j at input
    position (j + 0.5) * width / size). A map pixel is inside a box when its centre, mapped back into the image,
    lies in [x0, x1) x [y0, y1). A box too thin to hold any pixel centre along an axis gets the pixel holding its
    centre along that axis, so every box covers at least one map pixel."""
    mask = np.zeros((size, size), dtype=bool)
    cx = (np.arange(size) + 0.5) * (width / size)      # pixel centres in the image's pixels
    cy = (np.arange(size) + 0.5) * (height / size)
    for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        inx = (cx >= x0) & (cx < x1)
        iny = (cy >= y0) & (cy < y1)
        if not inx.any():
            inx[min(int((x0 + x1) / 2 * size / width), size - 1)] = True
        if not iny.any():
            iny[min(int((y0 + y1) / 2 * size / height), size - 1)] = True
        mask |= np.outer(iny, inx)
    return mask


def box_masks(boxes: pd.DataFrame, paths: Sequence[str], size: int) -> list[np.ndarray | None]:
    """One size x size mask per image path (the union of its boxes), None for an image without boxes."""
    grouped = {p: g for p, g in boxes.groupby("path", sort=False)}
    out: list[np.ndarray | None] = []
    for p in paths:
        g = grouped.get(p)
        if g is None:
            out.append(None)
            continue
        out.append(box_mask(g[list(COORDS)].to_numpy(), int(g["width"].iat[0]), int(g["height"].iat[0]), size))
    return out
