"""The command line every stage shares: its options, params, compute device, torchrun relaunch, errors, run facts.

    def main(argv=None):
        ap = stage_parser(__doc__, targets=True)    # --params, --manifest, --targets
        ap.add_argument("--backbone", required=True)
        args = ap.parse_args(argv)
        params = load_stage_params(args, data_parallel=True)   # compute.nproc > 1: re-run under torchrun, exit
        device = compute_device(params)             # compute.device and compute.threads
        ...
    if __name__ == "__main__":
        run_stage(main)                             # ScanbenchError -> "error: ..." on stderr, exit 2; run facts

Run facts (wall time, throughput, seconds per image) differ from run to run, so they never enter a DVC output:
they go to logs/run_facts.json, and the stage-time table to reports/stage_times.md (git-tracked, not hashed).
Nothing here imports torch at import time: a stage that loads no model (prepare, boxes, report) does not pay for it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..compute import resolve
from ..config import load_params
from ..errors import ScanbenchError
from ..io import write_text
from ..launch import relaunch_under_torchrun, report_rank_error

RUN_FACTS = Path("logs/run_facts.json")
STAGE_TABLE = Path("reports/stage_times.md")
_facts: dict[str, Any] = {}


def stage_parser(description: str | None, *, manifest: bool = True, targets: bool = False,
                 scan_models: bool = False) -> argparse.ArgumentParser:
    """The stage's parser (its docstring as the help) with the options stages share: --params; --manifest unless
    `manifest` is False; --targets (the target models' folder) and --scan-models (the SCAN decoders') on request."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    if manifest:
        ap.add_argument("--manifest", type=Path, default=Path("data/manifest.csv"))
    if targets:
        ap.add_argument("--targets", type=Path, default=Path("models/targets"),
                        help="folder of <backbone>/model.{pt,onnx}")
    if scan_models:
        ap.add_argument("--scan-models", type=Path, default=Path("models/scan"),
                        help="folder of <backbone>/default/decoder.pt (the SCAN decoders)")
    return ap


def load_stage_params(args: argparse.Namespace, *, data_parallel: bool = False) -> dict:
    """The params file args.params names, checked (scanbench.config.load_params). A data-parallel stage with
    compute.nproc > 1, in a plain process, re-runs under torchrun here and exits with its workers' status."""
    params = load_params(args.params)
    if data_parallel:
        relaunch_under_torchrun(params)
    return params


def compute_device(params: dict):
    """The stage's torch.device from params `compute` (CUDA asked for without CUDA: a one-line error), with
    PyTorch's CPU threads set from compute.threads (scanbench.compute.resolve)."""
    return resolve(params)


def profile_results(params: dict) -> Path:
    """results/<profile>: the run's results tree (one per profile)."""
    return Path("results") / str(params.get("profile", "default"))


def stage_name() -> str:
    """The run's name in the run facts: the module, then its option values that are not paths (explain@b-gradcam)."""
    script = Path(sys.argv[0]).stem
    values = [a for a in sys.argv[1:] if not a.startswith("--") and "/" not in a]
    return "@".join([script, "-".join(values)]) if values else script


def log_fact(**facts: Any) -> None:
    """Record run facts of this stage run (logged at its end, beside its wall time)."""
    _facts.update(facts)


def record_run(name: str, seconds: float) -> None:
    runs = json.loads(RUN_FACTS.read_text()) if RUN_FACTS.exists() else {}
    runs[name] = {"seconds": round(seconds, 1), **_facts}
    write_text(RUN_FACTS, json.dumps(runs, indent=1, sort_keys=True) + "\n")
    rows = [f"| {n} | {r['seconds']:.1f} |" for n, r in sorted(runs.items())]
    total = sum(r["seconds"] for r in runs.values())
    write_text(STAGE_TABLE, "# Stage wall times of the last run in this checkout\n\n"
               "Seconds per stage run (`logs/run_facts.json`), written by each stage as it ends: a run fact, not a "
               "DVC output. Start-up (imports) is included; DVC's own bookkeeping is not.\n\n"
               "| stage | seconds |\n|---|---|\n" + "\n".join(rows) + f"\n| **total** | {total:.1f} |\n")


def report_error(err: ScanbenchError) -> None:
    """The one-line error on stderr; in a torchrun worker also handed to the launching process (scanbench.launch)."""
    print(f"error: {err}", file=sys.stderr)
    report_rank_error(str(err))


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage's main(): bad input is one line and exit 2; at the end, the run's wall time and facts are logged
    (by rank 0 alone under torchrun)."""
    start = time.perf_counter()
    try:
        main()
    except ScanbenchError as err:
        report_error(err)
        sys.exit(2)
    seconds = time.perf_counter() - start
    if os.environ.get("RANK", "0") != "0":   # a torchrun worker other than rank 0: rank 0 logs the run
        return
    record_run(stage_name(), seconds)
    print(f"[{stage_name()}] done in {seconds:.1f} s", file=sys.stderr)
