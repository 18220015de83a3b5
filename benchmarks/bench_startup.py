"""Start-up of each stage: seconds to import its module (its top-level imports, in a fresh process), plus the lazy
imports it makes before its first real work where named (prepare: the ImageNet class list; model stages: timm).

    python benchmarks/bench_startup.py [--repo DIR] [--rounds 1]

Prints a Markdown table (stage | seconds). Run it on two checkouts to compare (reports/benchmarks/startup.md).
Run facts, not results: they depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

# stage -> the code it runs at start-up beyond its top-level imports (before reading any data)
EXTRA = {
    "prepare": "from scanbench.data import imagenet_wnid_index; imagenet_wnid_index()",
    "teacher": "import timm", "targets": "import timm", "features": "import timm", "explain": "import timm",
    "sanity": "import timm", "timing": "import timm", "ablate": "import timm", "scaling": "import timm",
}
STAGES = ["check_params", "prepare", "teacher", "targets", "features", "train_scan", "diagnose_scan", "scaling",
          "explain", "evaluate", "sanity", "timing", "ablate", "report"]


def measure(repo: Path, stage: str) -> float:
    code = ("import time; t = time.perf_counter(); "
            f"import scanbench.stages.{stage}; {EXTRA.get(stage, 'pass')}; print(time.perf_counter() - t)")
    if not (repo / "src" / "scanbench" / "stages" / f"{stage}.py").exists():
        return float("nan")
    env = {**os.environ, "PYTHONPATH": str(repo / "src"), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    print("| stage | start-up imports (s) |\n|---|---|")
    for stage in STAGES:
        times = sorted(measure(args.repo, stage) for _ in range(args.rounds))
        print(f"| {stage} | {times[len(times) // 2]:.2f} |", flush=True)


if __name__ == "__main__":
    main()
