"""The grid pointing game (Rao, Böhle & Schiele, "Towards Better Understanding Attribution Methods", CVPR 2022):
a localisation test that no image-independent prior can pass.

A mosaic is a 2 x 2 grid of four val images of four different classes, each resized to half the model's input
side, so that the mosaic has the model's input size. A method explains each tile's class on the mosaic; per tile:

- **share**: the map's positive mass inside that tile over its positive mass in the whole mosaic;
- **pointing**: 1 when the map's maximum lies in that tile, else 0.

Tiles are numbered row-major: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right. A map that is the same
whatever class is asked (uniform, centre prior, any fixed map) has share and pointing summing to exactly 1 over
the four tiles, so its mean over a mosaic's tiles is exactly 0.25: chance.

Rules where a map leaves the answer open (chosen so that the uniform map scores 0.25 on every tile):
- an all-zero map (what `normalize_maps` makes of a constant one) has share 0.25 in every tile, the uniform map's;
- ties at the maximum give each tile the share of the tied pixels it holds (the expected hit of a uniform random
  tie-break, as `scanbench.metrics.localisation.pointing_game`): a constant map points 0.25 at every tile, and a
  centre prior, whose four equal maxima sit around the mosaic's centre, one per tile, 0.25 too.

Candidates are the val images outside the evaluation and held-out sets (`candidate_rows`) that the model
classifies correctly on their own, at its input size (`correct_alone`); `draw_mosaics` draws the mosaics from
them (seeded, no image used twice). Intervals resample mosaics, not tiles: a mosaic's four tiles share its
images and the method's one view of it, so they are not independent.

A stage calls: candidate_rows -> (classify those images) correct_alone -> draw_mosaics -> load_mosaics ->
score_mosaics (once per method) -> method_summary / paired_summary / power_estimate. The pipeline's two stages
use the drivers at the end: `choose_mosaics` (stage `mosaics`, params `grid`), `check_mosaics`,
`score_with_examples` and `grid_record` (stages `grid_*`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .compute import module_device
from .config import check_grid_params
from .data import eval_indices, holdout_indices, load_image
from .errors import ScanbenchError
from .metrics.bootstrap import bootstrap_ci, paired_bootstrap_ci

N_TILES = 4


# ------------------------------------------------------------------------------------------------ candidates
def candidate_rows(manifest: pd.DataFrame, params: dict) -> np.ndarray:
    """Manifest rows (sorted) of the val images neither in the evaluation set (`eval_indices`) nor in the held-out
    set (`holdout_indices`), so that the grid game scores images no other measurement or decoder check uses."""
    used = np.union1d(eval_indices(manifest, params), holdout_indices(manifest, params))
    val = np.flatnonzero((manifest["split"] == "val").to_numpy())
    return np.setdiff1d(val, used).astype(np.int64)


def correct_alone(logits, labels, min_confidence: float = 0.0) -> np.ndarray:
    """Per image, whether the model classifies it correctly on its own (N booleans): the argmax of its logits is
    its label and, with `min_confidence` > 0, the softmax probability of the label (over the logits' classes,
    the dataset's) is at least that. GridPG keeps only such images: a tile the model does not recognise alone
    cannot test whether a map finds it."""
    logits = torch.as_tensor(logits).detach().cpu().double()
    labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).view(-1)
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ScanbenchError(f"correct_alone needs N x K logits and N labels (got {tuple(logits.shape)} and "
                             f"{tuple(labels.shape)})")
    if not 0.0 <= min_confidence <= 1.0:
        raise ScanbenchError(f"min_confidence must lie in [0, 1] (got {min_confidence!r})")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= logits.shape[1]):
        raise ScanbenchError(f"labels must index the logits' {logits.shape[1]} classes "
                             f"(got {int(labels.min())}..{int(labels.max())})")
    ok = logits.argmax(1) == labels
    if min_confidence > 0:
        prob = logits.softmax(1).gather(1, labels.view(-1, 1)).view(-1)
        ok &= prob >= min_confidence
    return ok.cpu().numpy()


# ------------------------------------------------------------------------------------------------ mosaics
def max_mosaics(labels) -> int:
    """The most mosaics of four distinct classes, no image used twice, that images with these labels allow:
    the largest m with sum over classes of min(count, m) >= 4 m (each class gives at most one image a mosaic)."""
    counts = np.unique(np.asarray(labels), return_counts=True)[1]
    best, hi = 0, int(counts.sum()) // N_TILES
    for m in range(1, hi + 1):   # the condition is monotone in m
        if np.minimum(counts, m).sum() < N_TILES * m:
            break
        best = m
    return best


def _feasible(counts: np.ndarray, m: int) -> bool:
    return bool(np.minimum(counts, m).sum() >= N_TILES * m)


def draw_mosaics(rows, labels, n_mosaics: int, seed: int) -> np.ndarray:
    """n_mosaics x 4 manifest rows: each mosaic four images of four distinct classes, in a seeded tile order
    (row-major), no image in two mosaics; the same array for the same arguments.

    `rows` are the candidate images' manifest rows, `labels` their classes (aligned with `rows`). Each mosaic picks
    its classes at random with weights proportional to the images each has left (so classes are used about as
    often as they have images) and takes each class's next image in a seeded shuffled order; when that pick
    would leave too few classes for the mosaics still to draw, it takes the four classes with the most images left
    instead (which always leaves a draw possible), so any n_mosaics up to `max_mosaics(labels)` succeeds."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    labels = np.asarray(labels).reshape(-1)
    if rows.shape != labels.shape:
        raise ScanbenchError(f"draw_mosaics needs one label per candidate row (got {len(rows)} rows and "
                             f"{len(labels)} labels)")
    if len(np.unique(rows)) != len(rows):
        raise ScanbenchError("draw_mosaics: the candidate rows repeat an image; pass each manifest row once")
    if isinstance(n_mosaics, bool) or not isinstance(n_mosaics, (int, np.integer)) or n_mosaics < 1:
        raise ScanbenchError(f"n_mosaics must be a positive integer (got {n_mosaics!r})")
    most = max_mosaics(labels)
    if n_mosaics > most:
        raise ScanbenchError(f"n_mosaics = {n_mosaics} exceeds the {most} mosaics of four distinct classes that "
                             f"the {len(rows)} candidate images allow: lower n_mosaics to at most {most}")
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    pools = [list(rng.permutation(rows[labels == c])) for c in classes]   # each class's images, seeded order
    counts = np.array([len(p) for p in pools], dtype=np.int64)
    out = np.empty((n_mosaics, N_TILES), dtype=np.int64)
    for i in range(n_mosaics):
        left = n_mosaics - i - 1
        pick = rng.choice(len(classes), size=N_TILES, replace=False, p=counts / counts.sum())
        after = counts.copy()
        after[pick] -= 1
        if not _feasible(after, left):
            # the most-images-first pick keeps every later draw possible; a random key breaks ties
            pick = np.lexsort((rng.random(len(classes)), -counts))[:N_TILES]
        counts[pick] -= 1
        out[i] = [pools[c].pop() for c in rng.permutation(pick)]
    return out


def check_side(size: int) -> int:
    """The mosaic side: even, so that the 2 x 2 tiles split it exactly (one pixel per tile, none shared)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 2 or size % 2:
        raise ScanbenchError(f"the grid pointing game needs an even input side of at least 2 px (got {size!r}): "
                             f"use a backbone whose input side is even")
    return int(size)


def _sides(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, (int, np.integer)) else size
    return check_side(h), check_side(w)


def compose(images_half: torch.Tensor) -> torch.Tensor:
    """Four tiles 4 x 3 x h x w -> one mosaic 3 x 2h x 2w (or N x 4 x 3 x h x w -> N x 3 x 2h x 2w), tiles in
    row-major order: top-left, top-right, bottom-left, bottom-right."""
    x = torch.as_tensor(images_half)
    single = x.ndim == 4
    if single:
        x = x.unsqueeze(0)
    if x.ndim != 5 or x.shape[1] != N_TILES:
        raise ScanbenchError(f"compose needs 4 x C x h x w tiles (or N x 4 x C x h x w; got {tuple(x.shape)})")
    top = torch.cat([x[:, 0], x[:, 1]], dim=-1)
    bottom = torch.cat([x[:, 2], x[:, 3]], dim=-1)
    out = torch.cat([top, bottom], dim=-2)
    return out[0] if single else out


def load_mosaics(root: str | Path, manifest: pd.DataFrame, mosaics: np.ndarray, size: int) -> torch.Tensor:
    """The mosaics (n x 4 manifest rows, as `draw_mosaics` gives) as N x 3 x size x size images in [0, 1], each
    tile its image loaded at size / 2 (`load_image`'s resize)."""
    half = check_side(size) // 2
    mosaics = np.asarray(mosaics, dtype=np.int64)
    if mosaics.ndim != 2 or mosaics.shape[1] != N_TILES:
        raise ScanbenchError(f"mosaics must be n x 4 manifest rows (got shape {mosaics.shape})")
    root, paths = Path(root), manifest["path"].to_numpy()
    tiles = torch.stack([torch.stack([load_image(root / paths[r], half) for r in m]) for m in mosaics])
    return compose(tiles)


def mosaic_classes(manifest: pd.DataFrame, mosaics: np.ndarray) -> np.ndarray:
    """n x 4 labels of the mosaics' tiles: the class each tile's map explains."""
    return manifest["label"].to_numpy()[np.asarray(mosaics, dtype=np.int64)]


def tile_masks(size: int | tuple[int, int]) -> np.ndarray:
    """4 x H x W booleans, tile k's pixels (row-major: top-left, top-right, bottom-left, bottom-right)."""
    h, w = _sides(size)
    masks = np.zeros((N_TILES, h, w), dtype=bool)
    for k in range(N_TILES):
        r, c = divmod(k, 2)
        masks[k, r * h // 2:(r + 1) * h // 2, c * w // 2:(c + 1) * w // 2] = True
    return masks


# ------------------------------------------------------------------------------------------------ scores
def _as_maps(maps) -> np.ndarray:
    if isinstance(maps, torch.Tensor):
        maps = maps.detach().cpu().numpy()
    m = np.nan_to_num(np.asarray(maps, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if m.ndim != 3:
        raise ScanbenchError(f"grid pointing needs B x H x W maps (got shape {m.shape})")
    _sides(m.shape[1:])
    return m


def _quadrants(m: np.ndarray) -> np.ndarray:
    """B x 4 x (h w): each tile's pixels, mirrored so that every tile is read from the mosaic's centre outwards.
    A map symmetric about the centre then has four identical rows, whose sums are bitwise equal, so its shares
    are exactly 0.25 rather than 0.25 up to the order of the additions."""
    h, w = m.shape[1] // 2, m.shape[2] // 2
    q = np.stack([m[:, :h, :w], m[:, :h, w:][:, :, ::-1], m[:, h:, :w][:, ::-1, :], m[:, h:, w:][:, ::-1, ::-1]], 1)
    return q.reshape(m.shape[0], N_TILES, h * w)


def _tiles(tile, b: int) -> np.ndarray:
    t = np.broadcast_to(np.asarray(tile), (b,)) if np.ndim(tile) == 0 else np.asarray(tile).reshape(-1)
    if t.shape != (b,) or not np.issubdtype(t.dtype, np.integer) or (t < 0).any() or (t >= N_TILES).any():
        raise ScanbenchError(f"tile must be one index in 0..3 or one per map ({b}; got {np.asarray(tile)!r})")
    return t.astype(np.int64)


def tile_shares(maps) -> np.ndarray:
    """B x 4: the share of each map's positive mass in each tile (rows sum to 1). An all-zero map (no positive
    mass: what `normalize_maps` makes of a constant map) has 0.25 in every tile, the uniform map's answer."""
    m = np.clip(_as_maps(maps), 0.0, None)
    mass = _quadrants(m).sum(2)                                     # B x 4
    total = (mass[:, 0] + mass[:, 1]) + (mass[:, 2] + mass[:, 3])    # pairs: four equal masses sum to exactly 4x
    safe = np.where(total > 0, total, 1.0)[:, None]
    return np.where(total[:, None] > 0, mass / safe, 1.0 / N_TILES)


def tile_share(maps, tile) -> np.ndarray:
    """B values: the share of each map's positive mass inside `tile` (one index 0..3, or one per map). An
    all-zero map scores 0.25 (the uniform map's share); a constant or centre-symmetric map exactly 0.25."""
    shares = tile_shares(maps)
    return shares[np.arange(len(shares)), _tiles(tile, len(shares))]


def tile_pointings(maps) -> np.ndarray:
    """B x 4: per map and tile, the share of the map's maximal pixels inside the tile (rows sum to 1): 1 for the
    tile holding a unique maximum; ties split as a uniform random tie-break would, in expectation."""
    m = _as_maps(maps)
    top = m == m.max(axis=(1, 2), keepdims=True)
    hits = _quadrants(top).sum(2).astype(np.float64)
    return hits / hits.sum(1, keepdims=True)


def tile_pointing(maps, tile) -> np.ndarray:
    """B values: 1 when the map's maximum lies in `tile` (one index 0..3, or one per map), else 0; with ties at
    the maximum, the share of the tied pixels inside the tile (a constant map scores 0.25)."""
    pts = tile_pointings(maps)
    return pts[np.arange(len(pts)), _tiles(tile, len(pts))]


# ------------------------------------------------------------------------------------------------ driver
@dataclass
class GridScores:
    """One method on n mosaics: n x 4 per-tile share and pointing (tile k's map explains tile k's class), and
    whether the model ranks the tile's class among its four highest logits on the mosaic (the same for every
    method: how many tiles the model itself recognises in the grid)."""
    share: np.ndarray
    pointing: np.ndarray
    in_top4: np.ndarray


def score_mosaics(model: Callable[[torch.Tensor], torch.Tensor],
                  explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                  mosaics: torch.Tensor, classes, batch_size: int = 4) -> GridScores:
    """Per-tile scores of one method on N mosaics (N x 3 x S x S in [0, 1], S even): for each mosaic and tile k,
    `explain(images, classes)` maps the mosaic for tile k's class (`classes`: N x 4 labels, `mosaic_classes`),
    and the map is scored in tile k. `model(x01) -> logits` gives `in_top4`. Mosaics go through in batches of
    `batch_size` (4 maps each); a seeded method sees them in mosaic order, tile order within a mosaic."""
    mosaics = torch.as_tensor(mosaics)
    classes = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    if mosaics.ndim != 4 or mosaics.shape[1] != 3:
        raise ScanbenchError(f"mosaics must be N x 3 x S x S images in [0, 1] (got {tuple(mosaics.shape)})")
    n, size = mosaics.shape[0], check_side(int(mosaics.shape[-1]))
    if mosaics.shape[-2] != size or tuple(classes.shape) != (n, N_TILES):
        raise ScanbenchError(f"score_mosaics needs square mosaics and N x 4 classes (got mosaics "
                             f"{tuple(mosaics.shape)}, classes {tuple(classes.shape)})")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ScanbenchError(f"batch_size must be a positive integer (got {batch_size!r})")
    share, pointing, in_top4 = [], [], []
    tiles = np.tile(np.arange(N_TILES), batch_size)
    for s in range(0, n, batch_size):
        x, c = mosaics[s:s + batch_size], classes[s:s + batch_size]
        b = x.shape[0]
        with torch.no_grad():   # a module runs where its parameters are; an engine places its input itself
            logits = torch.as_tensor(model(x.to(module_device(model)) if isinstance(model, torch.nn.Module)
                                           else x)).detach().cpu()
        top4 = logits.topk(min(N_TILES, logits.shape[1]), dim=1).indices
        in_top4.append((top4.unsqueeze(1) == c.unsqueeze(2)).any(2).cpu().numpy())
        maps = explain(x.repeat_interleave(N_TILES, dim=0), c.reshape(-1))
        if tuple(maps.shape) != (b * N_TILES, size, size):
            raise ScanbenchError(f"the explain function returned maps of shape {tuple(maps.shape)} for "
                                 f"{b * N_TILES} images of {size} px: it must return B x H x W at the input size")
        m = _as_maps(maps)
        share.append(tile_share(m, tiles[:b * N_TILES]).reshape(b, N_TILES))
        pointing.append(tile_pointing(m, tiles[:b * N_TILES]).reshape(b, N_TILES))
    return GridScores(np.concatenate(share), np.concatenate(pointing), np.concatenate(in_top4))


# ------------------------------------------------------------------------------------------------ summaries
def per_mosaic(values) -> np.ndarray:
    """n values: the mean over each mosaic's four tiles of n x 4 per-tile values (n values pass unchanged),
    the unit the intervals resample."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2 and v.shape[1] == N_TILES:
        return v.mean(1)
    if v.ndim == 1:
        return v
    raise ScanbenchError(f"grid scores must be n x 4 (per tile) or n (per mosaic) values (got shape {v.shape})")


def method_summary(share, pointing, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """One method's mean share and pointing over the mosaics, each with its percentile bootstrap interval
    resampling mosaics (both from the same resamples, `bootstrap_ci`)."""
    s, p = per_mosaic(share), per_mosaic(pointing)
    if s.shape != p.shape:
        raise ScanbenchError(f"share and pointing must cover the same mosaics (got {s.shape} and {p.shape})")
    ci = bootstrap_ci(np.stack([s, p], 1), n_resamples, seed, level)
    return {"n_mosaics": len(s), "share": float(s.mean()), "share_ci": [float(ci[0, 0]), float(ci[0, 1])],
            "pointing": float(p.mean()), "pointing_ci": [float(ci[1, 0]), float(ci[1, 1])]}


def paired_summary(a, b, n_resamples: int = 1000, seed: int = 0, level: float = 0.95) -> dict:
    """mean(a) - mean(b) of one score of two methods on the same mosaics, with its paired percentile bootstrap
    interval (`paired_bootstrap_ci`: the same resampled mosaics for both) and the interval's half-width."""
    a, b = per_mosaic(a), per_mosaic(b)
    lo, hi = paired_bootstrap_ci(a, b, n_resamples, seed, level)
    return {"n_mosaics": len(a), "difference": float(a.mean() - b.mean()), "ci": [float(lo), float(hi)],
            "half_width": float(hi - lo) / 2.0}


def power_estimate(a, b, target_half_width: float = 0.05, n_resamples: int = 1000, seed: int = 0,
                   level: float = 0.95) -> dict:
    """How many mosaics bring the paired interval of two methods' scores (per tile or per mosaic, on the same
    mosaics, e.g. a pilot run) to +-`target_half_width`: its half-width now, scaled as 1 / sqrt(n) (the
    interval of a mean), n_needed = ceil(n (half_width / target)^2), at least 1."""
    if not (isinstance(target_half_width, (int, float)) and math.isfinite(target_half_width)
            and target_half_width > 0):
        raise ScanbenchError(f"target_half_width must be a positive number (got {target_half_width!r})")
    pair = paired_summary(a, b, n_resamples, seed, level)
    n, hw = pair["n_mosaics"], pair["half_width"]
    return {**pair, "target_half_width": float(target_half_width),
            "n_needed": max(1, math.ceil(n * (hw / target_half_width) ** 2))}


# ------------------------------------------------------------------------------------------------ stage drivers
N_EXAMPLES = 2   # mosaics whose maps a grid stage keeps for the report's figure
CANDIDATE_SEED_OFFSET = 2   # the candidate subset's stream: seed + 2 (the held-out images take seed + 1)


def candidate_subset(manifest: pd.DataFrame, params: dict) -> np.ndarray:
    """The candidate images a mosaics stage classifies: grid.n_candidates of `candidate_rows`, a seeded subset
    (sorted), or all of them when it is null or at least their number."""
    rows = candidate_rows(manifest, params)
    n = params["grid"]["n_candidates"]
    if n is None or n >= len(rows):
        return rows
    rng = np.random.default_rng(int(params["seed"]) + CANDIDATE_SEED_OFFSET)
    return np.sort(rng.choice(rows, size=int(n), replace=False))


def classify_rows(forward: Callable[[torch.Tensor], torch.Tensor], root: str | Path, manifest: pd.DataFrame,
                  rows: np.ndarray, size: int, batch_size: int = 64) -> torch.Tensor:
    """N x K logits of the images at manifest `rows`, each on its own at `size` px (`load_image`), `forward`
    (a ForwardEngine, or any x01 -> logits) run on batches of `batch_size` images loaded one batch at a time."""
    root, paths = Path(root), manifest["path"].to_numpy()
    out = []
    for s in range(0, len(rows), batch_size):
        x = torch.stack([load_image(root / paths[r], size) for r in rows[s:s + batch_size]])
        with torch.no_grad():
            out.append(torch.as_tensor(forward(x)).detach().float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def choose_mosaics(manifest: pd.DataFrame, params: dict,
                   classify: Callable[[np.ndarray], torch.Tensor]) -> dict[str, np.ndarray]:
    """The mosaics of one backbone under params `grid` and `seed`: the candidate subset (`candidate_subset`),
    classified alone (`classify(rows) -> logits`), filtered by `correct_alone` (grid.min_confidence) when
    grid.correct_only, then `draw_mosaics`. Returns the arrays a mosaics file holds: rows and classes (n x 4),
    candidates (the rows classified) and correct (whether each was correct alone). Too few usable images for
    grid.n_mosaics is one line naming the key to change."""
    grid = check_grid_params(params)   # a params file without the section: one line naming grid.n_mosaics
    rows = candidate_subset(manifest, params)
    if len(rows) == 0:
        raise ScanbenchError("no candidate images for the grid pointing game: every val image is an evaluation "
                             "or held-out image; lower explain.n_images or features.n_holdout")
    labels = manifest["label"].to_numpy()[rows]
    correct = correct_alone(classify(rows), labels, float(grid["min_confidence"]))
    usable = correct if grid["correct_only"] else np.ones(len(rows), dtype=bool)
    n, most = int(grid["n_mosaics"]), max_mosaics(labels[usable])
    if n > most:
        which = (f"the {int(usable.sum())} of the {len(rows)} candidate images that the model classifies correctly "
                 f"alone (softmax >= grid.min_confidence = {grid['min_confidence']})" if grid["correct_only"] else
                 f"the {len(rows)} candidate images")
        fix = ("raise grid.n_candidates (or set it to null: every candidate image), or lower grid.n_mosaics"
               if grid["n_candidates"] is not None and len(rows) == grid["n_candidates"] else
               "lower grid.n_mosaics" + (" or grid.min_confidence" if grid["correct_only"] else ""))
        raise ScanbenchError(f"grid.n_mosaics = {n} exceeds the {most} mosaics of four distinct classes that {which} "
                             f"allow: {fix}")
    mosaics = draw_mosaics(rows[usable], labels[usable], n, int(params["seed"]))
    return {"rows": mosaics, "classes": mosaic_classes(manifest, mosaics), "candidates": rows.astype(np.int64),
            "correct": correct}


def check_mosaics(z: dict[str, np.ndarray], manifest: pd.DataFrame, path: str | Path) -> tuple[np.ndarray,
                                                                                              np.ndarray]:
    """(rows, classes) of a mosaics file (`choose_mosaics`' arrays), checked against the manifest: n x 4 rows of
    it, four distinct classes per mosaic, the classes the manifest gives them (else the file is stale)."""
    fix = "re-run the mosaics stage (dvc repro mosaics)"
    if "rows" not in z or "classes" not in z:
        raise ScanbenchError(f"{path} holds no mosaics (rows, classes): {fix}")
    rows, classes = np.asarray(z["rows"]), np.asarray(z["classes"])
    if rows.ndim != 2 or rows.shape[1] != N_TILES or len(rows) == 0 or classes.shape != rows.shape:
        raise ScanbenchError(f"{path}: rows and classes must be n x 4 (got {rows.shape} and {classes.shape}): {fix}")
    if not np.issubdtype(rows.dtype, np.integer) or rows.min() < 0 or rows.max() >= len(manifest):
        raise ScanbenchError(f"{path} names images outside the manifest's {len(manifest)} rows: {fix}")
    if not np.array_equal(classes, mosaic_classes(manifest, rows)):
        raise ScanbenchError(f"{path} does not match the manifest's labels (drawn from another manifest): {fix}")
    if any(len(set(c)) != N_TILES for c in classes.tolist()):
        raise ScanbenchError(f"{path}: a mosaic repeats a class (each needs four distinct classes): {fix}")
    return rows.astype(np.int64), classes.astype(np.int64)


def score_with_examples(model: Callable[[torch.Tensor], torch.Tensor],
                        explain: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], mosaics: torch.Tensor,
                        classes, batch_size: int = 4, n_examples: int = N_EXAMPLES) -> tuple[GridScores, np.ndarray]:
    """`score_mosaics`, plus the maps of the first `n_examples` mosaics (n_examples x 4 x S x S float16: tile k's
    class explained on mosaic i), kept as they go by for the report's figure."""
    kept: list[np.ndarray] = []
    want = min(n_examples, len(mosaics)) * N_TILES

    def explain_and_keep(images: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        maps = explain(images, cls)
        have = sum(len(k) for k in kept)
        if have < want:
            kept.append(torch.as_tensor(maps)[:want - have].detach().float().cpu().numpy())
        return maps

    scores = score_mosaics(model, explain_and_keep, mosaics, classes, batch_size)
    size = int(mosaics.shape[-1])
    examples = np.concatenate(kept) if kept else np.zeros((0, size, size), np.float32)
    return scores, examples.reshape(-1, N_TILES, size, size).astype(np.float16)


def grid_record(scores: GridScores, n_resamples: int = 1000, seed: int = 0) -> dict:
    """One method's grid result: `method_summary` (mean share and pointing over the mosaics, bootstrap
    intervals), `in_top4` (the share of tiles whose class the model ranks among its four highest logits on the
    mosaic) and `per_tile` (n x 4 share and pointing, for the report's paired comparisons)."""
    return {**method_summary(scores.share, scores.pointing, n_resamples, seed),
            "in_top4": float(np.mean(scores.in_top4)),
            "per_tile": {"share": np.asarray(scores.share, dtype=np.float64).tolist(),
                         "pointing": np.asarray(scores.pointing, dtype=np.float64).tolist()}}


__all__ = ["GridScores", "N_EXAMPLES", "candidate_rows", "candidate_subset", "check_mosaics", "check_side",
           "choose_mosaics", "classify_rows", "compose", "correct_alone", "draw_mosaics", "grid_record",
           "load_mosaics", "max_mosaics", "method_summary", "mosaic_classes", "paired_summary", "per_mosaic",
           "power_estimate", "score_mosaics", "score_with_examples", "tile_masks", "tile_pointing",
           "tile_pointings", "tile_share", "tile_shares"]
