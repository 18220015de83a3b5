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
    dummy = torch.rand(2, 3, input_size, input_size)
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
    """

    def __init__(self, model: nn.Module | None = None, kind: str = "torch", onnx_path: str | Path | None = None,
                 batch_size: int = 64, threads: int | None = None, spin: bool = False):
        if kind not in ENGINES:
            raise ScanbenchError(f"unknown engine {kind!r}; set evaluate.engine to one of {', '.join(ENGINES)}")
        self.kind = kind
        self.batch_size = batch_size
        self.model = model.eval() if model is not None else None
        if kind == "onnx":
            if onnx_path is None or not Path(onnx_path).exists():
                raise ScanbenchError(f"ONNX model {onnx_path} not found: run `dvc repro targets` first")
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads or os.cpu_count() or 1
            opts.inter_op_num_threads = 1
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
                opts.add_session_config_entry(key, "1" if spin else "0")
            self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        elif self.model is None:
            raise ScanbenchError("the torch engine needs a model")

    def _run(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "onnx":
            out = self.session.run(["logits"], {"images": np.ascontiguousarray(x.numpy(), dtype=np.float32)})[0]
            return torch.from_numpy(out)
        with torch.inference_mode():
            return self.model(x.contiguous(memory_format=torch.channels_last)).float()

    def __call__(self, x01: torch.Tensor) -> torch.Tensor:
        x01 = torch.as_tensor(x01, dtype=torch.float32)
        outs = [self._run(x01[i:i + self.batch_size]) for i in range(0, x01.shape[0], self.batch_size)]
        return torch.cat(outs) if outs else torch.empty(0)

    def predict(self, x01: torch.Tensor) -> torch.Tensor:
        return self(x01).argmax(1)

    def probs(self, x01: torch.Tensor) -> torch.Tensor:
        return self(x01).softmax(1)


def target_engine(backbone: str, folder: str | Path, kind: str, batch_size: int = 64,
                  model: nn.Module | None = None) -> ForwardEngine:
    """Forward engine for the saved target `<folder>/<backbone>/model.{pt,onnx}`. The PyTorch model is built only
    when the torch engine needs it and none is given: ONNX-only stages skip ~6 s of model building (timm import)."""
    folder = Path(folder) / backbone   # an unknown `kind` builds no model and fails in ForwardEngine
    if kind == "torch" and model is None:
        from .backbones import load_target

        model = load_target(backbone, folder / "model.pt")
    return ForwardEngine(model, kind, folder / "model.onnx", batch_size=batch_size)
