"""Shared by the stages that run every method of a backbone on one model (sanity, timing)."""
from __future__ import annotations

import argparse
from pathlib import Path

from scanbench.backbones import load_target
from scanbench.engine import target_engine
from scanbench.scan.train import scan_decoder_path


def explainer_stage_parser(description: str | None, per_backbone: bool = True) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description)
    if per_backbone:
        ap.add_argument("--backbone", required=True)
        ap.add_argument("--out", required=True, type=Path)
    else:
        ap.add_argument("--out-dir", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--targets", default="models/targets", type=Path, help="folder of <backbone>/model.{pt,onnx}")
    ap.add_argument("--scan-models", default="models/scan", type=Path, help="folder of <backbone>/default/decoder.pt")
    return ap


def load_target_engine(args: argparse.Namespace, params: dict, device="cpu"):
    """(model, forward engine, main SCAN decoder path) for args.backbone, as explainer_stage_parser names them;
    the model on `device` (the stage's compute.device), the engine there too unless it is ONNX Runtime's CPU one."""
    ev = params["evaluate"]
    model = load_target(args.backbone, args.targets / args.backbone / "model.pt", device=device)
    engine = target_engine(args.backbone, args.targets, ev["engine"], batch_size=ev["batch_size"], model=model,
                           device=device)
    return model, engine, scan_decoder_path(args.backbone, args.scan_models)
