"""A classifier head for a pretrained backbone that cannot score the data's classes as it is.

Labels are always the data's class indices 0..K-1 (the manifest's `label`). A backbone with an ImageNet-1k head on
data whose class folders are all ImageNet wnids keeps that head, restricted to the data's classes (`class_indices`).
Otherwise (no classifier in timm, as DINO's `num_classes=0`, or a class that is no ImageNet class: CUB, Food-101, a
user's own folders) the `head` stage fits a linear probe on the backbone's penultimate features of the train split,
and every later stage uses backbone + head as the target model (`pretrained_target`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .accuracy import top1
from .backbones import BackboneSpec, TargetModel, get_backbone
from .data import load_images
from .errors import ScanbenchError
from .io import atomic_path, load_torch, read_json, save_torch
from .lr_schedule import lr_at, set_lr


def head_reason(spec: BackboneSpec, imagenet_indices: Sequence[int]) -> str | None:
    """Why `spec` needs a fitted head on data whose classes have these ImageNet indices (-1: not an ImageNet
    class), or None when it needs none."""
    if spec.trained_here:
        return None          # trained in the pipeline on the data's own classes
    if not spec.imagenet_head:
        return f"{spec.timm_name or spec.name} has no ImageNet classifier (timm num_classes=0)"
    n_other = sum(1 for i in imagenet_indices if int(i) < 0)
    if n_other:
        return f"{n_other} of the data's {len(imagenet_indices)} classes are not ImageNet classes"
    return None


def pretrained_backbones(params: dict) -> list[str]:
    """Every backbone built from pretrained weights: those in `backbones` not trained here, and the teacher when
    a backbone is trained here (its logits are the soft labels, over the data's classes)."""
    names = [n for n in params["backbones"] if not get_backbone(n).trained_here]
    if any(get_backbone(n).trained_here for n in params["backbones"]):
        teacher = params["targets"]["vit"].get("teacher", "effnet_lite0")
        if teacher not in names:
            names.append(teacher)
    return names


def heads_needed(params: dict, imagenet_indices: Sequence[int]) -> dict[str, str]:
    """backbone -> why it needs a head, for the backbones the params build from pretrained weights."""
    out = {}
    for name in pretrained_backbones(params):
        reason = head_reason(get_backbone(name), imagenet_indices)
        if reason is not None:
            out[name] = reason
    return out


def weights_file(params: dict, name: str) -> str | None:
    """targets.weights.<name>: a local pretrained weights file, relative paths from the repo root (or None)."""
    weights = (params.get("targets") or {}).get("weights") or {}
    return None if weights.get(name) is None else str(weights[name])


def penultimate_features(model: TargetModel, images, device: torch.device | str = "cpu",
                         batch_size: int = 32, out: np.ndarray | None = None) -> np.ndarray:
    """model.features of each image (an iterable of [0, 1] batches or a tensor), float16 (N x D)."""
    chunks = images if not isinstance(images, torch.Tensor) else images.split(batch_size)
    rows, start = [], 0
    with torch.inference_mode():
        for x in chunks:
            f = model.features(x.to(device)).float().cpu().numpy().astype(np.float16)
            if out is not None:
                out[start:start + len(f)] = f
            else:
                rows.append(f)
            start += len(f)
    return out if out is not None else np.concatenate(rows)


def fit_linear_probe(train_x: np.ndarray, train_y: np.ndarray, n_classes: int, epochs: int, lr: float,
                     weight_decay: float, batch_size: int, seed: int,
                     device: torch.device | str = "cpu") -> tuple[nn.Linear, list[dict]]:
    """A linear classifier on (cached) features by AdamW and cross-entropy, seeded; features are centred by the
    train split's mean and scaled by one overall std (per-feature stds of a few images can be ~0 and blow up on
    new images), folded into the returned layer (it takes raw features). Returns the layer (on the CPU) and one
    row per epoch (train loss, train top-1)."""
    if len(train_x) == 0:
        raise ScanbenchError("the head stage found no train images: the data root needs a train split")
    y = torch.as_tensor(np.asarray(train_y), dtype=torch.long)
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ScanbenchError(f"train labels must lie in 0..{n_classes - 1} (got {int(y.min())}..{int(y.max())})")
    x = torch.as_tensor(np.asarray(train_x, dtype=np.float32))
    mu = x.mean(0)
    sd = (x - mu).pow(2).mean().sqrt().clamp_min(1e-6)
    xs = ((x - mu) / sd).to(device)
    y = y.to(device)
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():     # seeded init, independent of the global RNG
        layer.weight.copy_(torch.randn(layer.weight.shape, generator=gen) * 0.01)
        layer.bias.zero_()
    layer = layer.to(device)
    opt = torch.optim.AdamW(layer.parameters(), lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(xs) + batch_size - 1) // batch_size)
    curves, step = [], 0
    for epoch in range(epochs):
        order = torch.randperm(len(xs), generator=gen).to(device)
        total, correct = 0.0, 0
        for i in range(0, len(xs), batch_size):
            idx = order[i:i + batch_size]
            logits = layer(xs[idx])
            loss = nn.functional.cross_entropy(logits, y[idx])
            set_lr(opt, lr_at(step, steps, lr))   # cosine from lr to 0 over the steps, no warm-up
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y[idx]).sum())
        curves.append({"epoch": epoch + 1, "train_loss": total / len(xs), "train_top1": 100.0 * correct / len(xs)})
    # fold the standardisation in: W (x - mu) / sd + b = (W / sd) x + (b - W (mu / sd))
    layer = layer.cpu()
    out = nn.Linear(x.shape[1], n_classes)
    with torch.no_grad():
        out.weight.copy_(layer.weight / sd)
        out.bias.copy_(layer.bias - layer.weight @ (mu / sd))
    return out.eval(), curves


def probe_top1(layer: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy (percent) of a probe on cached features (one batch)."""
    return top1(layer, [torch.as_tensor(np.asarray(x, dtype=np.float32))], y)


def cache_penultimate_features(model: TargetModel, root: Path, rel_paths, size: int, batch_size: int,
                               device: torch.device | str, path: Path) -> np.ndarray:
    """Penultimate features of the images (data root `root`, at `size` px), written as float16 straight into
    `path` (a .npy memory map, so a split of ImageNet's size need not fit in memory), and returned as that map."""
    batches = (load_images(root, rel_paths[i:i + batch_size], size) for i in range(0, len(rel_paths), batch_size))
    with atomic_path(path, suffix=".npy") as tmp:
        first = next(batches, None)
        if first is None:
            raise ScanbenchError(f"no images to compute {path.name} from: the data root's split is empty")
        f0 = penultimate_features(model, [first], device)
        arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=(len(rel_paths), f0.shape[1]))
        arr[:len(f0)] = f0
        start = len(f0)
        for x in batches:
            f = penultimate_features(model, [x], device)
            arr[start:start + len(f)] = f
            start += len(f)
        arr.flush()
        del arr
    return np.load(path, mmap_mode="r")


def images_top1(model: TargetModel, root: Path, rel_paths, labels: np.ndarray, size: int, batch_size: int,
                device: torch.device | str) -> float:
    """Top-1 accuracy (percent) of the model (on `device`) on the images at `rel_paths` under `root`."""
    return top1(model, (load_images(root, rel_paths[i:i + batch_size], size).to(device)
                        for i in range(0, len(rel_paths), batch_size)), labels)


def trainable_from(model: TargetModel, path: str) -> list[str]:
    """Names of the parameters of module `path` and of every parameter registered after it (the rest of the
    network, then the head): timm registers modules in forward order, so this is "the last block onward"."""
    names = [n for n, _ in model.named_parameters()]
    first = next((i for i, n in enumerate(names) if n.startswith(path + ".")), None)
    if first is None:
        raise ScanbenchError(f"the model has no parameters under {path!r} (the backbone's last_block)")
    return names[first:]


def fine_tune_last_block(model: TargetModel, path: str, load: Callable[[np.ndarray], torch.Tensor],
                         labels: np.ndarray, epochs: int, lr: float, weight_decay: float, batch_size: int,
                         seed: int) -> tuple[list[str], list[dict]]:
    """Fine-tune the parameters from module `path` onward (and the head, already fitted as a probe) on the train
    images (`load(rows)` -> [0, 1] batch, rows into `labels`), by AdamW with a cosine decay, seeded; the rest is
    frozen and the network stays in eval mode (batch-norm statistics and dropout as pretrained). Returns the
    trained parameter names and one row per epoch."""
    device = next(model.parameters()).device
    names = trainable_from(model, path)
    trained = set(names)
    params = []
    for n, q in model.named_parameters():
        q.requires_grad_(n in trained)
        if n in trained:
            params.append(q)
    model.eval()
    y_all = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    steps = epochs * ((len(y_all) + batch_size - 1) // batch_size)
    curves, step = [], 0
    for epoch in range(epochs):
        order = torch.randperm(len(y_all), generator=gen).cpu().numpy()   # a seeded CPU draw
        total, correct = 0.0, 0
        for i in range(0, len(order), batch_size):
            rows = order[i:i + batch_size]
            x, y = load(rows).to(device), y_all[rows].to(device)
            logits = model(x)
            loss = nn.functional.cross_entropy(logits, y)
            set_lr(opt, lr_at(step, steps, lr))   # cosine from lr to 0 over the steps, no warm-up
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            total += float(loss.detach()) * len(rows)
            correct += int((logits.detach().argmax(1) == y).sum())
        curves.append({"epoch": epoch + 1, "train_loss": total / len(order),
                       "train_top1": 100.0 * correct / len(order)})
    for q in model.parameters():
        q.requires_grad_(True)
    return names, curves


def save_head(path: str | Path, name: str, n_classes: int, state: dict[str, torch.Tensor], meta: dict) -> None:
    """The fitted tensors, keyed as in the TargetModel (`head.weight`, and with last_block `net.blocks...`)."""
    save_torch(path, {"backbone": name, "n_classes": int(n_classes), "meta": dict(meta),
                      "state_dict": {k: v.detach().cpu() for k, v in state.items()}})


def pretrained_target(spec: BackboneSpec, class_table, head_dir: str | Path, params: dict,
                      device: torch.device | str = "cpu") -> TargetModel:
    """The target model of a pretrained backbone over the data's classes: its ImageNet head restricted to them,
    or, where the `head` stage fitted one (head_dir/<backbone>/head.pt), the backbone's features through it."""
    head_dir = Path(head_dir)
    meta_path = head_dir / "meta.json"
    if not meta_path.exists():
        raise ScanbenchError(f"{meta_path} not found: run `dvc repro head` first")
    fitted = read_json(meta_path).get("heads", {})
    weights = weights_file(params, spec.name)
    if spec.name not in fitted:
        reason = head_reason(spec, class_table["imagenet_index"].tolist())
        if reason is not None:
            raise ScanbenchError(f"{spec.name} needs a fitted head ({reason}) but {head_dir} has none for it: "
                                 f"run `dvc repro head`")
        return spec.build(class_indices=class_table["imagenet_index"].tolist(), pretrained=True,
                          weights=weights).to(device)
    ckpt = load_torch(head_dir / spec.name / "head.pt", stage="head", map_location="cpu")
    if ckpt.get("backbone") != spec.name or int(ckpt["n_classes"]) != len(class_table):
        raise ScanbenchError(f"{head_dir / spec.name / 'head.pt'} is for {ckpt.get('backbone')} with "
                             f"{ckpt.get('n_classes')} classes, not {spec.name} with {len(class_table)}: "
                             f"run `dvc repro head`")
    model = spec.build(pretrained=True, head_classes=len(class_table), weights=weights)
    state = ckpt["state_dict"]
    own = model.state_dict()
    bad = [k for k in state if k not in own or tuple(own[k].shape) != tuple(state[k].shape)]
    if bad or "head.weight" not in state:
        raise ScanbenchError(f"{head_dir / spec.name / 'head.pt'} does not fit {spec.name} "
                             f"({', '.join(bad[:3]) or 'no head.weight'}): run `dvc repro head`")
    model.load_state_dict(state, strict=False)   # the pretrained tensors, with the fitted ones over them
    return model.to(device).eval()
