"""Train a SCAN decoder on a cached feature set (features.py), and save / load its checkpoint.

The feature store holds, per image, F and G = d logit_c / d F (c = predicted class) as float16 and the
uint8 image at the reconstruction size; training draws P per sample from [p_train_low, p_train_high), masks F
(Eq. 1), decodes, and minimises Eq. 10 with Adam at the rate of `scan.lr_schedule` (scanbench.lr_schedule).
Everything random (init, shuffling, P) is drawn from `seed`.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from ..compute import module_device
from ..errors import ScanbenchError
from ..features import FeatureSet, feature_grid, reconstruction_size, training_rows
from ..io import load_torch, save_torch
from ..lr_schedule import check_schedule, lr_at, set_lr, two_percent_warmup
from .decoder import build_decoder, decoder_from_kwargs
from .loss import check_variant, confidence, effective_alpha, make_target, scan_loss
from .masking import gradient_mask, sample_percentiles

CURVE_KEYS = ("loss", "loss_c", "loss_r", "omega", "conf_area", "recon_err", "recon_err_weighted")
# the training curves' resolution: a row every `curve_every(total)` optimiser steps, at most CURVE_EVERY apart and
# at least about 100 rows in a run (a 4,500-step run: 450 rows; a 10-step smoke run: one per step)
CURVE_EVERY = 10


def curve_every(total_steps: int) -> int:
    """Steps per row of the training curves: min(CURVE_EVERY, total_steps // 100), at least 1."""
    return max(1, min(CURVE_EVERY, total_steps // 100))


def load_batch(fs: FeatureSet, idx: np.ndarray, device: torch.device | str = "cpu"
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(F, G, images01) as float32 tensors on `device` for rows `idx` of a (memory-mapped, float16) feature set."""
    idx = np.sort(np.asarray(idx))          # ascending reads are kinder to the memory map
    F = torch.from_numpy(np.asarray(fs.F[idx], dtype=np.float32)).to(device)
    G = torch.from_numpy(np.asarray(fs.G[idx], dtype=np.float32)).to(device)
    images01 = torch.from_numpy(np.asarray(fs.images[idx], dtype=np.float32) / 255.0).to(device)
    return F, G, images01


def decoder_input(F: torch.Tensor, G: torch.Tensor, p: float | torch.Tensor, variant: str) -> torch.Tensor:
    """Eq. 1 masking, skipped by the "no_mask" ablation (train and inference alike)."""
    return F if variant == "no_mask" else gradient_mask(F, G, p)


def _layer_of(fs: FeatureSet, spec, what: str) -> str:
    layer = fs.meta.get("layer")
    if not layer:
        raise ScanbenchError(f"the {what} feature set's meta.json names no layer: re-run the features stage")
    return spec.resolve_layer(layer)


def _scan_params(params: dict) -> dict:
    return params["scan"] if "scan" in params else params


@torch.no_grad()
def mean_confidence_area(decoder: nn.Module, fs: FeatureSet, p: float, variant: str = "full",
                         batch_size: int = 32) -> float:
    """Mean confidence C over a feature set at a fixed P (decoder in eval mode): the held-out area."""
    decoder.eval()
    device = module_device(decoder)
    total, n = 0.0, 0
    for start in range(0, len(fs), batch_size):
        F, G, _ = load_batch(fs, np.arange(start, min(start + batch_size, len(fs))), device)
        C = confidence(decoder(decoder_input(F, G, p, variant))[:, 0], variant)
        total += C.mean((1, 2)).sum().item()
        n += F.shape[0]
    return total / max(n, 1)


def _steps(scan: dict, epochs: int | None, steps: int | None, n: int, bs: int) -> int:
    """Optimiser steps: `steps`, else `epochs` passes over n images, else scan.steps (or scan.epochs)."""
    per_epoch = -(-n // bs)
    if steps is None and epochs is None:
        steps, epochs = scan.get("steps"), scan.get("epochs")
    if steps is not None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ScanbenchError(f"scan.steps must be an integer >= 1 (got {steps!r})")
        return steps
    if epochs is None:
        raise ScanbenchError("params give neither scan.steps nor scan.epochs: set scan.steps")
    if int(epochs) < 1:
        raise ScanbenchError(f"epochs must be >= 1 (got {epochs})")
    return int(epochs) * per_epoch


def train_decoder(train_set: FeatureSet, holdout_set: FeatureSet | None, spec, params: dict, alpha: float,
                  variant: str = "full", epochs: int | None = None, n_train: int | None = None, seed: int = 0,
                  progress: bool = True, steps: int | None = None, device: torch.device | str = "cpu",
                  ctx=None) -> tuple[nn.Module, list[dict], dict]:
    """Train a SCAN decoder on `device`; returns (decoder in eval mode, curves, summary).

    Data-parallel (`ctx`, a scanbench.distributed.DistContext of world > 1): DistributedDataParallel, each rank
    taking its contiguous part of every global batch of `scan.batch_size`. Every rank draws the same global order
    and percentiles from `seed` (the single run's stream), batch norms use the global batch's statistics, and
    each rank's loss is weighted by its share of the batch, so the averaged gradient is the single run's
    (docs/DECISIONS.md: why not torch's DistributedSampler).

    The decoder's initial weights, the shuffling and the percentiles are drawn on the CPU (seeded), so a run on
    another device starts from the same decoder and sees the same batches.

    Length: `steps` optimiser steps, or `epochs` passes over the n_train images, else params scan.steps.
    Shuffled passes follow one another until the steps are done; curves get one row every `curve_every(steps)`
    steps (the last window may be shorter): `step` (the window's last), `epoch` (that step's pass) and the mean of
    each loss term over the window's samples. The summary's `final_loss` is the mean loss over the last pass.
    Logging reads the loss terms only (`.item()`): it draws nothing and changes no computation."""
    scan = _scan_params(params)
    check_variant(variant)
    effective_alpha(alpha, variant)          # rejects alpha <= 0
    if len(train_set) < 1:
        raise ScanbenchError("the training feature set holds no images: re-run the features stage")
    rows = training_rows(len(train_set), n_train, seed)     # a seeded subset, never the first (one-class) rows
    n = len(rows)
    bs = int(scan["batch_size"])
    total_steps = _steps(scan, epochs, steps, n, bs)
    schedule = check_schedule(str(scan.get("lr_schedule", "constant")), "scan.lr_schedule")
    warmup = two_percent_warmup(total_steps)
    for fs, what in ((train_set, "train"), (holdout_set, "holdout")):
        owner = fs.meta.get("backbone") if fs is not None else None
        if owner is not None and owner != spec.name:
            raise ScanbenchError(f"the {what} feature set was extracted from backbone {owner!r}, not {spec.name!r}")
    layer = _layer_of(train_set, spec, "train")
    if holdout_set is not None and _layer_of(holdout_set, spec, "holdout") != layer:
        raise ScanbenchError(f"train and holdout feature sets come from different layers "
                             f"({train_set.meta.get('layer')} vs {holdout_set.meta.get('layer')})")
    grid = feature_grid(train_set.F.shape[1:], spec.family, spec.grid)
    size = train_set.images.shape[-1]
    expected = reconstruction_size(spec.input_size, grid, scan.get("out_size"))
    if size != expected:
        raise ScanbenchError(f"feature set images are {size} px but SCAN reconstructs at {expected} px "
                             f"(scan.out_size) for backbone {spec.name}: re-run the features stage")
    if holdout_set is not None and holdout_set.images.shape[-1] != size:
        raise ScanbenchError(f"holdout images are {holdout_set.images.shape[-1]} px, train images {size} px: "
                             f"re-run the features stage")
    lambda_c = float(scan.get("lambda_c", 0.1))
    p_low, p_high = scan.get("p_train_low", 70), scan.get("p_train_high", 100)
    lr = float(scan["lr"])

    with torch.random.fork_rng(devices=[]):   # seeded init without touching the caller's global RNG
        torch.manual_seed(seed)
        decoder = build_decoder(spec, train_set.F.shape[1:], params, out_size=size)
    decoder = decoder.to(device)   # the CPU: a no-op
    world = ctx.world if ctx is not None else 1
    model = decoder
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        from ..distributed import sync_batch_norm

        decoder = sync_batch_norm(decoder, ctx)
        # buffers (batch-norm running statistics) stay equal on every rank by construction: no broadcast (torch
        # deprecates broadcast_buffers but itself advises keeping it where buffers must not be re-synced)
        warnings.filterwarnings("ignore", "`broadcast_buffers` is deprecated")
        model = DistributedDataParallel(decoder, device_ids=[device] if torch.device(device).type == "cuda" else None,
                                        broadcast_buffers=False)
        progress = progress and ctx.is_main
    opt = torch.optim.Adam(decoder.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)

    passes: list[dict] = []    # per pass: the summary's final loss
    windows: list[tuple[int, int, list[float]]] = []   # per curve row: (step, epoch, [sum of each term, samples])
    every = curve_every(total_steps)
    win_sums, win_seen = dict.fromkeys(CURVE_KEYS, 0.0), 0
    decoder.train()
    step, epoch = 0, 0
    bar = tqdm(total=total_steps, desc=f"scan {spec.name}", unit="step", disable=not progress, leave=False,
               mininterval=10)
    while step < total_steps:
        epoch += 1
        sums, seen = dict.fromkeys(CURVE_KEYS, 0.0), 0
        order = rows[torch.randperm(n, generator=gen).cpu().numpy()]
        for start in range(0, n, bs):
            if step >= total_steps:
                break
            batch = order[start:start + bs]
            n_global = len(batch)
            # the global batch's percentiles, in load_batch's (ascending) row order: the same on every rank
            p = sample_percentiles(len(batch), p_low, p_high, generator=gen)
            if world > 1:   # this rank's contiguous part of the (sorted) global batch
                lo, hi = len(batch) * ctx.rank // world, len(batch) * (ctx.rank + 1) // world
                batch, p = np.sort(batch)[lo:hi], p[lo:hi]
            F, G, images01 = load_batch(train_set, batch, device)
            # an empty part (a short last batch, fewer samples than ranks) skips the masking, which needs a sample
            out = model(decoder_input(F, G, p, variant) if F.shape[0] else F)
            set_lr(opt, lr_at(step, total_steps, lr, schedule, warmup))
            opt.zero_grad(set_to_none=True)
            if F.shape[0]:
                terms = scan_loss(out, make_target(images01, grid, variant), alpha, lambda_c, variant)
                if not torch.isfinite(terms["loss"]):
                    raise FloatingPointError(f"non-finite SCAN loss at step {step + 1}: {terms}")
                # DDP averages over ranks: weighting by the rank's share makes it the global batch's mean
                loss = terms["loss"] if world == 1 else terms["loss"] * (F.shape[0] * world / n_global)
            else:   # a rank with no sample in a short last batch still joins the gradient all-reduce, with zeros
                terms, loss = None, out.sum() * 0.0
            loss.backward()
            opt.step()
            step += 1
            seen += F.shape[0]
            win_seen += F.shape[0]
            if terms is not None:
                for k in CURVE_KEYS:
                    term = terms[k].item() * F.shape[0]
                    sums[k] += term
                    win_sums[k] += term
            if step % every == 0 or step == total_steps:
                windows.append((step, epoch, [*win_sums.values(), float(win_seen)]))
                win_sums, win_seen = dict.fromkeys(CURVE_KEYS, 0.0), 0
            bar.update(1)
            if terms is not None:   # refresh=False: the bar redraws at its mininterval (logs stayed MBs otherwise)
                bar.set_postfix(loss=f"{terms['loss'].item():.4f}", area=f"{terms['conf_area'].item():.3f}",
                                refresh=False)
        if world > 1:   # the pass's sums over every rank's samples
            from ..distributed import all_reduce_sum

            total = all_reduce_sum(torch.tensor([*sums.values(), seen], dtype=torch.float64, device=device), ctx)
            sums, seen = dict(zip(CURVE_KEYS, total[:-1].tolist())), int(total[-1].item())
        passes.append({"epoch": epoch, "step": step, **{k: v / max(seen, 1) for k, v in sums.items()}})
    bar.close()
    decoder.eval()
    window_sums = [w[2] for w in windows]
    if world > 1:   # each window's sums over every rank's samples
        from ..distributed import all_reduce_sum

        window_sums = all_reduce_sum(torch.tensor(window_sums, dtype=torch.float64, device=device), ctx).tolist()
    # no wall time in curves or summary: they are DVC outputs and must depend on the inputs only
    curves = [{"step": s, "epoch": e, **{k: v / max(w[-1], 1) for k, v in zip(CURVE_KEYS, w)}}
              for (s, e, _), w in zip(windows, window_sums)]

    p_infer = float(params.get("p", 95))   # the top-level inference percentile
    val_area = (mean_confidence_area(decoder, holdout_set, p_infer, variant, batch_size=bs)
                if holdout_set is not None and len(holdout_set) else None)
    summary = {"backbone": spec.name, "alpha": float(alpha), "layer": spec.layer_alias(layer), "layer_path": layer,
               "variant": variant,
               "final_loss": passes[-1]["loss"], "val_confidence_area": val_area,
               "target_area": 1.0 / (1.0 + effective_alpha(alpha, variant)),
               "n_train": n, "steps": total_steps, "image_steps": total_steps * bs,
               "epochs": round(total_steps * bs / n, 2), "out_size": int(size),
               "widths": list(decoder.kwargs["widths"])}
    return decoder, curves, summary


# ---------------------------------------------------------------- checkpoints

def save_decoder(path: str | Path, decoder: nn.Module, meta: dict[str, Any]) -> None:
    """Checkpoint {"backbone", "layer", "alpha", "variant", "decoder_kwargs", "state_dict"}, written atomically.

    "layer" is the module path (meta["layer_path"] if given, e.g. a training summary, else meta["layer"])."""
    missing = [k for k in ("backbone", "layer", "alpha") if k not in meta]
    if missing:
        raise ScanbenchError(f"decoder checkpoint meta lacks {', '.join(missing)}")
    save_torch(path, {"backbone": str(meta["backbone"]), "layer": str(meta.get("layer_path") or meta["layer"]),
                      "alpha": float(meta["alpha"]), "variant": str(meta.get("variant", "full")),
                      "decoder_kwargs": dict(decoder.kwargs),
                      # CPU tensors whatever the device: the same bytes from a GPU run
                      "state_dict": {k: v.cpu() for k, v in decoder.state_dict().items()}})


def load_decoder(path: str | Path, expected_backbone: str, expected_layer: str | None = None,
                 device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a decoder from its checkpoint onto `device` (eval mode); refuses another backbone's decoder, or
    another layer's when `expected_layer` (a module path, compared as written) is given."""
    path = Path(path)
    if not path.exists():
        raise ScanbenchError(f"SCAN decoder {path} not found: run `dvc repro train_scan` first")
    ckpt = load_torch(path, stage="train_scan", map_location=device)
    if ckpt.get("backbone") != expected_backbone:
        raise ScanbenchError(f"decoder {path} was trained for backbone {ckpt.get('backbone')!r}, "
                             f"not {expected_backbone!r}")
    if expected_layer is not None and ckpt.get("layer") != expected_layer:
        raise ScanbenchError(f"decoder {path} was trained on layer {ckpt.get('layer')!r}, "
                             f"not {expected_layer!r}")
    decoder = decoder_from_kwargs(ckpt["decoder_kwargs"]).to(device)
    decoder.load_state_dict(ckpt["state_dict"])
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    return decoder.eval(), meta


def scan_decoder_path(backbone: str, folder: str | Path = "models/scan", layer: str = "default") -> Path:
    """Where `train_scan` saves a backbone's decoder for a layer alias (the main one: "default"), as dvc.yaml
    names it."""
    return Path(folder) / backbone / layer / "decoder.pt"
