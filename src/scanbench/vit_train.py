"""Train the default profile's ViT on cached 64 px images, distilled from the CNN's soft labels.

Fixed epoch count (not a time budget) so that the same params give the same model on any machine.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from .accuracy import top1
from .compute import module_device
from .lr_schedule import lr_at, set_lr


@dataclass
class ViTTrainConfig:
    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup_epochs: int = 1
    distill_temperature: float = 2.0
    distill_weight: float = 0.7
    label_smoothing: float = 0.1
    seed: int = 0
    pad: int = 4


def augment(x: torch.Tensor, gen: torch.Generator, pad: int) -> torch.Tensor:
    """Random crop from a reflect-padded image and horizontal flip, per image (seeded)."""
    b, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h))            # b x h
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w))            # b x w
    idx_b = torch.arange(b).view(b, 1, 1)
    out = padded.permute(0, 2, 3, 1)[idx_b, rows.view(b, h, 1), cols.view(b, 1, w)].permute(0, 3, 1, 2)
    flip = torch.rand(b, generator=gen) < 0.5
    out[flip] = out[flip].flip(-1)
    return out.contiguous()


def accuracy(model: nn.Module, images_u8: np.ndarray, labels: np.ndarray, batch_size: int = 256) -> float:
    """Top-1 accuracy (percent) of the model, in eval mode, on uint8 images (N x 3 x H x W)."""
    model.eval()
    device = module_device(model)
    batches = (torch.from_numpy(np.ascontiguousarray(images_u8[i:i + batch_size])).float().div_(255).to(device)
               for i in range(0, len(labels), batch_size))
    return top1(model, batches, labels)


def step_row(step: int, epoch: int, loss: float, correct: int, n: int, lr: float) -> dict:
    """One optimiser step's row of the step-level curves: the batch's loss and top-1 (percent) and the step's rate
    (values the training loop has already read: logging draws nothing and changes no computation)."""
    return {"step": step, "epoch": epoch, "loss": loss, "train_top1": 100.0 * correct / max(n, 1), "lr": lr}


def train_vit(model: nn.Module, train_u8: np.ndarray, train_labels: np.ndarray, teacher: np.ndarray,
              val_u8: np.ndarray, val_labels: np.ndarray, cfg: ViTTrainConfig,
              step_curves: list[dict] | None = None) -> list[dict]:
    """Train in place on the model's device; returns one dict of curves per epoch (step, loss, train/val top-1,
    lr) and, when `step_curves` is a list, appends a `step_row` to it per optimiser step.
    Shuffling and augmentation are drawn on the CPU (seeded), then each batch moves to the model's device."""
    device = module_device(model)
    gen = torch.Generator().manual_seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and "pos_embed" not in n and "cls_token" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim > 1 and "pos_embed" not in n
                                                               and "cls_token" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr)
    n = len(train_labels)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    warmup = cfg.warmup_epochs * steps_per_epoch
    labels_t = torch.from_numpy(train_labels).long().to(device)
    teacher_t = torch.from_numpy(teacher).float().to(device)
    curves, step, start = [], 0, time.perf_counter()
    for epoch in range(cfg.epochs):
        model.train()
        perm = torch.randperm(n, generator=gen)
        tot_loss, tot_correct = 0.0, 0
        bar = tqdm(range(steps_per_epoch), desc=f"vit epoch {epoch + 1}/{cfg.epochs}", unit="step", mininterval=10)
        for s in bar:
            idx = perm[s * cfg.batch_size:(s + 1) * cfg.batch_size]
            x = torch.from_numpy(train_u8[np.sort(idx.cpu().numpy())]).float().div_(255)
            idx = idx.sort().values
            x = augment(x, gen, cfg.pad).to(device)
            idx = idx.to(device)
            set_lr(opt, lr_at(step, total, cfg.lr, "cosine", warmup, progress_first=True))
            loss, correct = distillation_step(model, opt, model.parameters(), x, labels_t[idx], teacher_t[idx], cfg)
            step += 1
            tot_loss += loss * len(idx)
            tot_correct += correct
            if step_curves is not None:
                step_curves.append(step_row(step, epoch + 1, loss, correct, len(idx), opt.param_groups[0]["lr"]))
            bar.set_postfix(loss=f"{loss:.3f}")
        curves.append(epoch_row(epoch, step, tot_loss, tot_correct, n, accuracy(model, val_u8, val_labels), opt, start))
    model.eval()
    return curves


def distillation_step(net: nn.Module, opt: torch.optim.Optimizer, clipped, x: torch.Tensor, labels: torch.Tensor,
                      teacher: torch.Tensor, cfg: ViTTrainConfig) -> tuple[float, int]:
    """One optimiser step on the distillation loss (1 - w) CE(labels) + w T^2 KL(teacher / T || logits / T), gradients
    clipped to norm 1 over `clipped`; returns the batch's loss and its correct count (the ViT's and the hybrid's)."""
    T = cfg.distill_temperature
    logits = net(x)
    hard = F.cross_entropy(logits, labels, label_smoothing=cfg.label_smoothing)
    soft = F.kl_div(F.log_softmax(logits / T, 1), F.softmax(teacher / T, 1), reduction="batchmean") * T * T
    loss = (1 - cfg.distill_weight) * hard + cfg.distill_weight * soft
    opt.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(clipped, 1.0)
    opt.step()
    return loss.item(), (logits.argmax(1) == labels).sum().item()


def epoch_row(epoch: int, step: int, tot_loss: float, tot_correct: int, n: int, val_top1: float, opt,
              start: float) -> dict:
    """The per-epoch curve row (no wall time: a DVC output), printed with the seconds so far."""
    row = {"epoch": epoch + 1, "step": step, "loss": tot_loss / n, "train_top1": 100.0 * tot_correct / n,
           "val_top1": val_top1, "lr": opt.param_groups[0]["lr"]}
    print(f"epoch {epoch + 1}: loss {row['loss']:.4f} train {row['train_top1']:.1f}% val {val_top1:.1f}% "
          f"({time.perf_counter() - start:.0f} s)", flush=True)
    return row
