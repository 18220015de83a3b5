"""Shared plumbing for stage scripts: run main(), turn bad input into a one-line error, log wall time."""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Callable

from scanbench.errors import ScanbenchError

# Wall time of each stage run, for the report (not a DVC output: timings differ from run to run).
STAGE_TIMES = Path("logs/stage_times.json")


def stage_name() -> str:
    script = Path(sys.argv[0]).stem
    values = [a for a in sys.argv[1:] if not a.startswith("--") and "/" not in a]
    return "@".join([script, "-".join(values)]) if values else script


def record_time(name: str, seconds: float) -> None:
    STAGE_TIMES.parent.mkdir(parents=True, exist_ok=True)
    times = json.loads(STAGE_TIMES.read_text()) if STAGE_TIMES.exists() else {}
    times[name] = round(seconds, 1)
    tmp = STAGE_TIMES.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(times, indent=1, sort_keys=True))
    tmp.replace(STAGE_TIMES)


def run_stage(main: Callable[[], None]) -> None:
    start = time.perf_counter()
    try:
        main()
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    seconds = time.perf_counter() - start
    record_time(stage_name(), seconds)
    print(f"[{stage_name()}] done in {seconds:.1f} s", file=sys.stderr)


def explainer_stage_parser(description: str | None):
    """Arguments shared by the stages that explain with every method of a backbone (sanity, timing)."""
    import argparse

    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--targets", default="models/targets", type=Path, help="folder of <backbone>/model.{pt,onnx}")
    ap.add_argument("--scan-models", default="models/scan", type=Path, help="folder of <backbone>/default/decoder.pt")
    return ap


def load_target_engine(args, params: dict):
    """(model, forward engine, main SCAN decoder path) for args.backbone, as explainer_stage_parser names them."""
    from scanbench.backbones import load_target
    from scanbench.engine import target_engine
    from scanbench.scan.train import scan_decoder_path

    ev = params["evaluate"]
    model = load_target(args.backbone, args.targets / args.backbone / "model.pt")
    engine = target_engine(args.backbone, args.targets, ev["engine"], batch_size=ev["batch_size"], model=model)
    return model, engine, scan_decoder_path(args.backbone, args.scan_models)
