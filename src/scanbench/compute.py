"""Where the work runs: params `compute.device`, `compute.threads`, `compute.nproc`, resolved in one place.

    device = resolve(params)         # torch.device; also sets PyTorch's CPU thread count
    model = load_target(name, path, device=device)

- `device`: `auto` (CUDA when torch sees one, else the CPU), `cpu`, `cuda` or `cuda:N`. Asking for CUDA on a
  machine without it is bad input (one line, exit 2), never a silent fall-back to the CPU.
- `threads`: PyTorch's intra-op threads (and ONNX Runtime's); null = every core the machine has.
- `nproc`: processes per host. Above 1, the data-parallel stages re-run themselves under torchrun
  (scanbench.distributed); each worker then takes cuda:LOCAL_RANK on a GPU and threads // nproc CPU threads.

Everything else follows the model: explainers, decoders and metrics take the device from the model's parameters
(as pytorch-grad-cam's BaseCAM does) and build their tensors on their input's device, so nothing but the stage
scripts reads these params. On the CPU this changes no number and no speed (`.to(cpu)` of a CPU tensor is itself).
"""
from __future__ import annotations

import os
from typing import Any

from .config import compute_params
from .errors import ScanbenchError

CGROUP_CPU_MAX = "/sys/fs/cgroup/cpu.max"


def available_cores() -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers, CI runners).
    os.cpu_count() counts the host's cores, and a thread per host core on a 2-core quota oversubscribes it."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open(CGROUP_CPU_MAX) as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, -(-int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def local_world() -> tuple[int, int]:
    """(LOCAL_RANK, LOCAL_WORLD_SIZE) of a torchrun worker; (0, 1) in a plain process."""
    return int(os.environ.get("LOCAL_RANK", 0)), int(os.environ.get("LOCAL_WORLD_SIZE", 1))


def thread_count(params: dict[str, Any]) -> int:
    """compute.threads, or every available core when null; a torchrun worker gets its share, threads // the
    workers on its host (at least 1), so that nproc workers do not oversubscribe the cores."""
    threads = compute_params(params)["threads"] or available_cores()
    return max(1, threads // local_world()[1])


def resolve_device(spec: str):
    """A `compute.device` string -> torch.device; CUDA asked for where there is none is a one-line error."""
    import torch

    if spec == "auto":
        spec = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ScanbenchError(f"compute.device is {spec!r} but this machine has no CUDA device (torch "
                             f"{torch.__version__}, torch.cuda.is_available() is False): set compute.device to "
                             f"auto or cpu")
    if spec == "cuda" and local_world()[1] > 1:   # one GPU per torchrun worker on this host
        spec = f"cuda:{local_world()[0]}"
    dev = torch.device(spec)
    if dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ScanbenchError(f"compute.device is {spec!r} but this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s) (cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return dev


def resolve(params: dict[str, Any]):
    """The stage's torch.device from params `compute`, with PyTorch's CPU threads set (compute.threads).

    One interop thread is PyTorch's default here; only the intra-op count is set."""
    import torch

    c = compute_params(params)
    device = resolve_device(c["device"])
    torch.set_num_threads(thread_count(params))
    return device


def module_device(module):
    """The device of a module's first parameter (or buffer); the CPU for a module with neither."""
    import torch

    for t in module.parameters():
        return t.device
    for t in module.buffers():
        return t.device
    return torch.device("cpu")
