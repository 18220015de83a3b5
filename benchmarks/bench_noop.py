"""A no-op `dvc repro` and `dvc status` on a checkout whose run is complete (the target: a no-op `dvc repro`
within 5 s, docs/METHODS.md §4).

    python benchmarks/bench_noop.py --repo DIR [--python PY ...] [--rounds 3]

Each `--python` is an interpreter whose environment has DVC (e.g. one with and one without `ruamel.yaml.clib`, the
C YAML parser DVC's lock-file reads use when installed); default: this one. Per interpreter: seconds of
`PY -m dvc repro` and `PY -m dvc status`, `--rounds` times each (median and range), and whether the run re-ran a
stage (`boxes` is always_changed) or changed dvc.lock. The repo's dvc.lock and reports/stage_times.md are restored
afterwards. Prints a Markdown table. Run facts, not results: they depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], repo: Path) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    return time.perf_counter() - t, out.stdout + out.stderr


def has_clib(python: str) -> bool:
    return subprocess.run([python, "-c", "import _ruamel_yaml"], capture_output=True).returncode == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, required=True)
    ap.add_argument("--python", action="append", default=None)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    keep = {p: (args.repo / p).read_bytes() for p in ("dvc.lock", "reports/stage_times.md")
            if (args.repo / p).exists()}
    print("| interpreter | ruamel.yaml.clib | `dvc repro` no-op (s): median [min, max] | `dvc status` (s) | "
          "stages run | dvc.lock changed |\n|---|---|---|---|---|---|")
    try:
        for py in args.python or [sys.executable]:
            repro, status, ran, changed = [], [], set(), False
            for _ in range(args.rounds):
                s, log = timed([py, "-m", "dvc", "repro"], args.repo)
                repro.append(s)
                ran |= {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage '")}
                changed |= (args.repo / "dvc.lock").read_bytes() != keep["dvc.lock"]
                status.append(timed([py, "-m", "dvc", "status"], args.repo)[0])
            print(f"| {py} | {'yes' if has_clib(py) else 'no'} | {statistics.median(repro):.2f} "
                  f"[{min(repro):.2f}, {max(repro):.2f}] | {statistics.median(status):.2f} | "
                  f"{', '.join(sorted(ran)) or 'none'} | {'yes' if changed else 'no'} |", flush=True)
    finally:
        for p, data in keep.items():
            (args.repo / p).write_bytes(data)


if __name__ == "__main__":
    main()
