"""Shared plumbing for stage scripts: run main(), turn bad input into a one-line error, log run facts.

Run facts (wall time, throughput, seconds per image) differ from run to run, so they never enter a DVC output:
they go to logs/run_facts.json, and the stage-time table to reports/stage_times.md (git-tracked, not hashed).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

from scanbench.errors import ScanbenchError

RUN_FACTS = Path("logs/run_facts.json")
STAGE_TABLE = Path("reports/stage_times.md")
_facts: dict[str, Any] = {}


def stage_name() -> str:
    script = Path(sys.argv[0]).stem
    values = [a for a in sys.argv[1:] if not a.startswith("--") and "/" not in a]
    return "@".join([script, "-".join(values)]) if values else script


def log_fact(**facts: Any) -> None:
    """Record run facts of this stage run (logged at its end, beside its wall time)."""
    _facts.update(facts)


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def record_run(name: str, seconds: float) -> None:
    runs = json.loads(RUN_FACTS.read_text()) if RUN_FACTS.exists() else {}
    runs[name] = {"seconds": round(seconds, 1), **_facts}
    _replace(RUN_FACTS, json.dumps(runs, indent=1, sort_keys=True) + "\n")
    rows = [f"| {n} | {r['seconds']:.1f} |" for n, r in sorted(runs.items())]
    total = sum(r["seconds"] for r in runs.values())
    _replace(STAGE_TABLE, "# Stage wall times of the last run in this checkout\n\n"
             "Seconds per stage run (`logs/run_facts.json`), written by each stage as it ends: a run fact, not a "
             "DVC output. Start-up (imports) is included; DVC's own bookkeeping is not.\n\n"
             "| stage | seconds |\n|---|---|\n" + "\n".join(rows) + f"\n| **total** | {total:.1f} |\n")


def _report_rank_error(message: str) -> None:
    """Under torchrun, hand the one-line error to the launching process (scanbench.distributed)."""
    if "scanbench.distributed" in sys.modules:
        sys.modules["scanbench.distributed"].report_rank_error(message)


def run_stage(main: Callable[[], None]) -> None:
    start = time.perf_counter()
    try:
        main()
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        _report_rank_error(str(err))
        sys.exit(2)
    seconds = time.perf_counter() - start
    if os.environ.get("RANK", "0") != "0":   # a torchrun worker other than rank 0: rank 0 logs the run
        return
    record_run(stage_name(), seconds)
    print(f"[{stage_name()}] done in {seconds:.1f} s", file=sys.stderr)
