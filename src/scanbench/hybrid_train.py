"""Train a hybrid ViT (a frozen CNN trunk under timm's HybridEmbed, then the transformer: vit_hybrid_lite0).

The trunk never changes, so its feature maps of the training images are computed once (float16) and only the
transformer part (HybridEmbed's projection, CLS token, position embeddings, Blocks, norm, classifier) is trained
on them, distilled from the CNN teacher's soft labels as `vit_train.train_vit` does for the ViT trained from
pixels. Fixed epoch count and seeds: the same params give the same model. `train_target` /
`pretrained_trunk_kwargs` are what the `targets` stage calls for any backbone it trains.
"""
from __future__ import annotations

import contextlib
import math
import time
from typing import Callable, Iterator

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm

from .compute import module_device
from .errors import ScanbenchError
from .lr_schedule import lr_at, set_lr
from .vit_train import ViTTrainConfig, distillation_step, epoch_row, step_row, train_vit


def is_hybrid(model: nn.Module) -> bool:
    """Whether a TargetModel's network takes its tokens from a CNN trunk (timm's HybridEmbed)."""
    from timm.layers import HybridEmbed

    return isinstance(getattr(getattr(model, "net", None), "patch_embed", None), HybridEmbed)


def pretrained_trunk_kwargs(spec, params: dict) -> dict:
    """Extra `spec.build` arguments for training a backbone in the `targets` stage: a hybrid's trunk takes the
    pretrained weights of the backbone `spec.extra["trunk"]` names (its targets.weights file when set); none for a
    ViT trained from pixels."""
    trunk = spec.extra.get("trunk")
    if trunk is None:
        return {}
    return {"pretrained": True, "weights": (params.get("targets", {}).get("weights") or {}).get(trunk)}


def train_target(model: nn.Module) -> Callable[..., list[dict]]:
    """The trainer for a model the `targets` stage trains: `train_hybrid` for a hybrid ViT, else `train_vit`
    (the same arguments)."""
    return train_hybrid if is_hybrid(model) else train_vit


@contextlib.contextmanager
def trunk_bypassed(model: nn.Module) -> Iterator[nn.Module]:
    """Inside, `model.net` takes the trunk's feature maps (B x C x h x w) instead of images: HybridEmbed's
    backbone is an Identity (timm's own forward does the rest). Yields `model.net`; the trunk is put back."""
    embed = model.net.patch_embed
    trunk = embed.backbone
    embed.backbone = nn.Identity()
    try:
        yield model.net
    finally:
        embed.backbone = trunk


@torch.inference_mode()
def trunk_features(model: nn.Module, images_u8: np.ndarray, batch_size: int = 64, flip: bool = False,
                   desc: str = "trunk features") -> np.ndarray:
    """float16 N x C x h x w feature maps of the frozen trunk (in eval mode) for uint8 N x 3 x H x W images,
    normalised as the TargetModel does; `flip`: of the horizontally flipped images."""
    device = module_device(model)
    trunk = model.net.patch_embed.backbone
    was = trunk.training
    trunk.eval()
    out = None
    try:
        for i in tqdm(range(0, len(images_u8), batch_size), desc=desc, unit="batch", mininterval=10):
            # a copy: the teacher cache is a read-only memory map
            x = torch.from_numpy(np.array(images_u8[i:i + batch_size])).to(device).float().div_(255)
            if flip:
                x = x.flip(-1)
            f = trunk((x - model.mean) / model.std)
            f = f[-1] if isinstance(f, (list, tuple)) else f
            if out is None:
                out = np.empty((len(images_u8), *f.shape[1:]), dtype=np.float16)
            out[i:i + len(f)] = f.half().cpu().numpy()
    finally:
        trunk.train(was)
    return out if out is not None else np.empty((0,), dtype=np.float16)


@torch.inference_mode()
def features_accuracy(model: nn.Module, feats: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 (percent) of the model on cached trunk features."""
    device = module_device(model)
    model.eval()
    correct = 0
    with trunk_bypassed(model) as net:
        for i in range(0, len(labels), batch_size):
            x = torch.from_numpy(feats[i:i + batch_size]).to(device).float()
            correct += int((net(x).argmax(1).cpu().numpy() == labels[i:i + batch_size]).sum())
    return 100.0 * correct / max(1, len(labels))


def _check_size(model: nn.Module, images_u8: np.ndarray, what: str) -> None:
    want = tuple(model.net.patch_embed.img_size)
    got = tuple(images_u8.shape[-2:])
    if got != want:
        raise ScanbenchError(f"{what} are {got[0]} x {got[1]} px but the hybrid ViT takes {want[0]} x {want[1]}: "
                             f"re-run the teacher stage (`dvc repro -f teacher`), which caches them at the input "
                             f"size of the backbone trained in the pipeline")


def train_hybrid(model: nn.Module, train_u8: np.ndarray, train_labels: np.ndarray, teacher: np.ndarray,
                 val_u8: np.ndarray, val_labels: np.ndarray, cfg: ViTTrainConfig,
                 step_curves: list[dict] | None = None) -> list[dict]:
    """`train_vit`'s contract for a hybrid ViT: the trunk's features of the train and val images computed once
    (float16, the trunk frozen and in eval mode), then the transformer trained on them in place (AdamW, warm-up
    then cosine, label-smoothed cross-entropy mixed with the teacher's soft labels, seeded shuffling; no image
    augmentation: the features are fixed). Returns one dict of curves per epoch (step, loss, train/val top-1, lr);
    `step_curves`: as `train_vit`'s."""
    _check_size(model, train_u8, "the cached train images")
    _check_size(model, val_u8, "the cached val images")
    device = module_device(model)
    feats = trunk_features(model, train_u8, desc="trunk features (train)")
    val_feats = trunk_features(model, val_u8, desc="trunk features (val)")
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    trunk_ids = {id(p) for p in model.net.patch_embed.backbone.parameters()}
    params = [(n, p) for n, p in model.named_parameters() if id(p) not in trunk_ids]

    def decays(n: str, p: torch.Tensor) -> bool:
        return p.ndim > 1 and "pos_embed" not in n and "cls_token" not in n

    opt = torch.optim.AdamW([{"params": [p for n, p in params if decays(n, p)], "weight_decay": cfg.weight_decay},
                             {"params": [p for n, p in params if not decays(n, p)], "weight_decay": 0.0}], lr=cfg.lr)
    trained = [p for _, p in params]
    n = len(train_labels)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    labels_t = torch.from_numpy(np.asarray(train_labels)).long().to(device)
    teacher_t = torch.from_numpy(np.asarray(teacher)).float().to(device)
    curves, step, start = [], 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        perm = torch.randperm(n, generator=gen)
        tot_loss, tot_correct = 0.0, 0
        with trunk_bypassed(model) as net:
            net.train()
            bar = tqdm(range(steps_per_epoch), desc=f"hybrid vit epoch {epoch + 1}/{cfg.epochs}", unit="step",
                       mininterval=10)
            for s in bar:
                idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size].sort().values
                x = torch.from_numpy(feats[idx.cpu().numpy()]).to(device).float()
                idx = idx.to(device)
                set_lr(opt, lr_at(step, total, cfg.lr, "cosine", warmup, progress_first=True))   # as train_vit
                loss, correct = distillation_step(net, opt, trained, x, labels_t[idx], teacher_t[idx], cfg)
                step += 1
                tot_loss += loss * len(idx)
                tot_correct += correct
                if step_curves is not None:
                    step_curves.append(step_row(step, epoch + 1, loss, correct, len(idx), opt.param_groups[0]["lr"]))
                bar.set_postfix(loss=f"{loss:.3f}")
        val = features_accuracy(model, val_feats, np.asarray(val_labels))
        curves.append(epoch_row(epoch, step, tot_loss, tot_correct, n, val, opt, start))
    model.eval()
    return curves
