"""Data-parallel stages (params `compute.nproc` > 1): launch through torchrun, shard images, gather to rank 0.

    relaunch_under_torchrun(params)     # scanbench.launch: nproc > 1 and not a torchrun worker: torchrun, exit
    device = resolve(params)            # scanbench.compute: cuda:LOCAL_RANK on a GPU, threads // nproc on the CPU
    ctx = init_process_group(device)    # gloo on the CPU, NCCL on CUDA; world 1 (no group) outside torchrun
    rows = shard(len(images), ctx, align=batch_size)   # this rank's contiguous block of the images
    parts = gather_to_rank0(per_image_results, ctx)    # rank 0: every rank's part, in rank (= image) order
    if ctx.is_main: write ...                          # only rank 0 writes outputs

Shards are contiguous blocks in the images' own order, so rank 0 concatenates the gathered parts and gets the
single-process order back; their bounds are multiples of `align` (a stage's batch size), so every batch a rank
runs is one the single-process run runs too. Multi-host: torchrun's own rendezvous flags, passed through
the environment variable SCANBENCH_TORCHRUN_ARGS (e.g. "--nnodes 2 --rdzv-backend c10d --rdzv-endpoint
host:29500"); without it, "--standalone" (one host). It is launch configuration (how many hosts meet where),
never an input of a result, which is why it may live outside params.yaml (docs/DECISIONS.md). The relaunch under
torchrun is scanbench.launch's (no torch there: every stage's command line imports it, data-parallel or not).
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from .errors import ScanbenchError
from .launch import under_torchrun


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init_process_group(device: torch.device) -> DistContext:
    """Join torchrun's process group (NCCL for CUDA, gloo for the CPU); world 1 and no group outside torchrun."""
    import torch.distributed as dist

    if not under_torchrun() or int(os.environ["WORLD_SIZE"]) == 1:
        return DistContext(0, 1, device)
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
            dist.init_process_group("nccl", device_id=device)
        else:
            dist.init_process_group("gloo")
    return DistContext(dist.get_rank(), dist.get_world_size(), device)


def destroy_process_group(ctx: DistContext) -> None:
    import torch.distributed as dist

    if ctx.distributed and dist.is_initialized():
        dist.barrier()   # rank 0 has written the outputs before any rank leaves
        dist.destroy_process_group()


def shard(n: int, ctx: DistContext, align: int = 1) -> range:
    """This rank's contiguous block of range(n): blocks of whole `align`-sized batches, as even as they can be,
    in rank order (rank 0 first), so that the blocks concatenated are range(n)."""
    if align < 1:
        raise ScanbenchError(f"shard alignment must be >= 1 (got {align})")
    batches = -(-n // align)
    lo = ctx.rank * batches // ctx.world
    hi = (ctx.rank + 1) * batches // ctx.world
    return range(min(lo * align, n), min(hi * align, n))


def gather_to_rank0(obj: Any, ctx: DistContext) -> list[Any] | None:
    """Every rank's `obj` (picklable) on rank 0, in rank order; None on the other ranks; [obj] in one process."""
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist

    parts: list[Any] | None = [None] * ctx.world if ctx.is_main else None
    dist.gather_object(obj, parts, dst=0)
    return parts


def broadcast_from_rank0(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The element-wise sum of `t` over ranks (in place; `t` itself in one process)."""
    if ctx.distributed:
        import torch.distributed as dist

        dist.all_reduce(t)
    return t


# ---------------------------------------------------------------- batch norm over the global batch

class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (every rank's samples), for gloo.

    torch's nn.SyncBatchNorm does this on CUDA only; this is the same computation with torch's differentiable
    all_reduce (two passes: the mean, then the variance around it, as one process's batch norm computes them),
    so two ranks with half a batch each normalise as one process with the whole batch does. Eval mode is plain
    BatchNorm2d (running statistics). The state dict keys are BatchNorm2d's."""

    group = None   # a process group of its own, so its collectives never interleave with DDP's gradient buckets

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce  # differentiable: backward sums the gradients

        dims = (0, 2, 3)
        count = all_reduce(x.new_tensor([x.shape[0] * x.shape[2] * x.shape[3]], dtype=x.dtype), group=self.group)
        mean = all_reduce(x.sum(dims), group=self.group) / count
        centred = x - mean.view(1, -1, 1, 1)
        var = all_reduce((centred * centred).sum(dims), group=self.group) / count
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            # momentum None: a cumulative average, as BatchNorm2d does
            m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
            n = count.item()
            self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        y = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def sync_batch_norm(module: nn.Module, ctx: DistContext) -> nn.Module:
    """Batch norms of `module` computing their statistics over the global batch: nn.SyncBatchNorm on CUDA,
    GlobalBatchNorm2d on the CPU (gloo). One process: `module` as it is."""
    if not ctx.distributed:
        return module
    if ctx.device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    import torch.distributed as dist

    # torch.distributed.nn.functional.all_reduce is deprecated for a private successor (_functional_collectives)
    # whose autograd support is not public API; the public one is kept and its notice silenced
    warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_reduce is deprecated")
    _convert_children(module, dist.new_group(backend="gloo"))
    return module


def _convert_children(module: nn.Module, group) -> None:
    for name, child in list(module.named_children()):
        if type(child) is nn.BatchNorm2d:
            bn = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                   child.track_running_stats).to(child.weight.device)
            bn.load_state_dict(child.state_dict())
            bn.group = group
            setattr(module, name, bn)
        else:
            _convert_children(child, group)
