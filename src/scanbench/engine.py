"""Forward-only inference: logits for many [0, 1] images, batched, by PyTorch or ONNX Runtime.

Every forward-only workload (perturbation tests, Drop/Inc, RISE, LIME, calibration, sanity
re-evaluation) goes through `ForwardEngine`, so the engine is one param (`evaluate.engine`).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .errors import ScanbenchError

ENGINES = ("onnx", "torch")


def export_onnx(model: nn.Module, path: str | Path, input_size: int, opset: int = 17) -> Path:
    """Export a TargetModel ([0, 1] image -> logits) with a dynamic batch axis, atomically."""
    from .io import atomic_path

    model = model.eval()
    device = next(model.parameters()).device
    dummy = torch.rand(2, 3, input_size, input_size).to(device)   # drawn on the CPU: the same dummy anywhere
    from .backbones import attention_modules
    for m in attention_modules(model):
        m.fused_attn = False  # plain matmul/softmax exports cleanly on every opset
    with atomic_path(path, suffix=".onnx") as tmp:
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["images"], output_names=["logits"],
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset,
                          dynamo=False)
    return Path(path)


class ForwardEngine:
    """`engine(x01) -> logits` (torch.Tensor, float32) in batches of `batch_size`, no gradient.

    ONNX Runtime's threads wait passively (`spin=False`), as OpenMP's do (scanbench/__init__.py): a spinning
    worker keeps a core busy after each run, and on 2 cores it slowed whatever PyTorch work came next (SCAN
    timed right after RISE: 1.4-1.9x its own time, reports/benchmarks/timing_agreement.md); batch-16 forwards
    were no slower without spinning on the shared box. `spin=True` is ONNX Runtime's default.

    Device (`device`, else the model's): the torch engine runs the model where its weights are; ONNX Runtime runs
    on the CPU, or on CUDA through its CUDA provider when that is installed. Asked for ONNX on a GPU without that
    provider, the engine is the PyTorch one on the GPU (`kind` says which it is). Logits come back on the input's
    device.
    """

    def __init__(self, model: nn.Module | None = None, kind: str = "torch", onnx_path: str | Path | None = None,
                 batch_size: int = 64, threads: int | None = None, spin: bool = False,
                 device: torch.device | str | None = None):
        if kind not in ENGINES:
            raise ScanbenchError(f"unknown engine {kind!r}; set evaluate.engine to one of {', '.join(ENGINES)}")
        self.model = model.eval() if model is not None else None
        if device is None:
            device = next(model.parameters()).device if model is not None else "cpu"
        self.device = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if kind == "onnx" and self.device.type == "cuda":
            if "CUDAExecutionProvider" in onnx_providers():
                providers = [("CUDAExecutionProvider", {"device_id": self.device.index or 0}), "CPUExecutionProvider"]
            elif self.model is not None:
                kind = "torch"   # no CUDA provider: the PyTorch engine on the GPU beats ONNX Runtime on the CPU
        self.kind = kind
        self.batch_size = batch_size
        if kind == "torch" and self.model is not None and next(self.model.parameters()).device != self.device:
            self.model = self.model.to(self.device)
        if kind == "onnx":
            if onnx_path is None or not Path(onnx_path).exists():
                raise ScanbenchError(f"ONNX model {onnx_path} not found: run `dvc repro targets` first")
            import onnxruntime as ort

            opts = ort.SessionOptions()
            # compute.threads, as scanbench.compute.resolve set it for PyTorch (every core when null)
            opts.intra_op_num_threads = threads or torch.get_num_threads() or os.cpu_count() or 1
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
                opts.add_session_config_entry(key, "1" if spin else "0")
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=providers)
        elif self.model is None:
            raise ScanbenchError("the torch engine needs a model")

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "onnx":
            out = self.session.run(["logits"], {"images": np.ascontiguousarray(x.cpu().numpy(), dtype=np.float32)})[0]
            return torch.from_numpy(out).to(x.device)
        with torch.inference_mode():
            return self.model(x.to(self.device).contiguous(memory_format=torch.channels_last)).float().to(x.device)

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        x01 = torch.as_tensor(x01, dtype=torch.float32)
        outs = [self._run(x01[i:i + self.batch_size]) for i in range(0, x01.shape[0], self.batch_size)]
        return torch.cat(outs) if outs else torch.empty(0, device=x01.device)

    def predict(self, x01: torch.Tensor) -> torch.Tensor:
        return self(x01).argmax(1)

    def probs(self, x01: torch.Tensor) -> torch.Tensor:
        return self(x01).softmax(1)


def onnx_providers() -> list[str]:
    """ONNX Runtime's execution providers in this install (CPUExecutionProvider at least)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def engine_kind(kind: str, device: torch.device | str) -> str:
    """The engine that serves `kind` (evaluate.engine) on `device`: ONNX on a GPU only with ONNX Runtime's CUDA
    provider installed, else the PyTorch engine on the GPU; on the CPU, `kind` as asked."""
    if kind == "onnx" and torch.device(device).type == "cuda" and "CUDAExecutionProvider" not in onnx_providers():
        return "torch"
    return kind


def target_engine(backbone: str, folder: str | Path, kind: str, batch_size: int = 64,
                  model: nn.Module | None = None, device: torch.device | str | None = None) -> ForwardEngine:
    """Forward engine for the saved target `<folder>/<backbone>/model.{pt,onnx}` on `device` (default: the model's,
    else the CPU). The PyTorch model is built only when the torch engine needs it and none is given: ONNX-only
    stages skip ~6 s of model building (timm import)."""
    folder = Path(folder) / backbone   # an unknown `kind` builds no model and fails in ForwardEngine
    if device is None:
        device = next(model.parameters()).device if model is not None else torch.device("cpu")
    kind = engine_kind(kind, device) if kind in ENGINES else kind
    if kind == "torch" and model is None:
        from .backbones import load_target

        model = load_target(backbone, folder / "model.pt", device=device)
    return ForwardEngine(model, kind, folder / "model.onnx", batch_size=batch_size, device=device)
