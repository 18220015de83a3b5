"""CI: compare the metric tables a run produced against the committed reference; fail on drift.

    python pipeline/compare_metrics.py --reference reports/reference/smoke --current reports/metrics \
        [--abs-tol 0.5] [--tol 'explanations/*/methods/lime=2' ...] [--all]

Prints a Markdown table (metric | reference | current | delta | tolerance | ok), like
`dvc metrics diff --md`. Exit 0: every value within tolerance; 1: a value drifted, changed, or a metric is
missing / new; 2: bad input. timing.json is not compared (machine-dependent).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.report.compare import DEFAULT_TOLERANCES, compare_dirs, markdown_table, parse_tolerances  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", default="reports/reference/smoke")
    ap.add_argument("--current", default="reports/metrics")
    ap.add_argument("--abs-tol", type=float, default=None,
                    help=f"default absolute tolerance, metric units (default {DEFAULT_TOLERANCES['*']}; "
                         f"percent for AUCs, Drop/Inc/Win, top-1)")
    ap.add_argument("--tol", action="append", default=[], metavar="PATTERN=VALUE",
                    help="per-key tolerance: an fnmatch pattern on the flattened path (file/key/...), which "
                         "also covers everything below it; the most specific pattern wins. Defaults: "
                         + ", ".join(f"{k}={v}" for k, v in DEFAULT_TOLERANCES.items()))
    ap.add_argument("--all", action="store_true", help="list unchanged metrics too")
    args = ap.parse_args(argv)
    tolerances = parse_tolerances(args.tol, args.abs_tol)
    rows = compare_dirs(args.reference, args.current, tolerances)
    print(markdown_table(rows, show_all=args.all))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
