"""CI (not a DVC stage): compare the metric tables a run produced against the committed reference; fail on drift.

    python -m scanbench.stages.compare_metrics --reference reports/reference/smoke --current reports/metrics \
        [--abs-tol 0.5] [--tol 'explanations/*/methods/lime=2' ...] [--all]
    python -m scanbench.stages.compare_metrics --update-reference --reference reports/reference/smoke \
        --current reports/metrics      # copy a run's metrics in as the new reference, with this machine's facts

Prints the two machines and a Markdown table (metric | reference | current | delta | tolerance | ok), like
`dvc metrics diff --md`. Tolerances come from the reference's reference.yaml (why each is what it is is written
there), then --abs-tol / --tol. Exit 0: every value within tolerance; 1: a value drifted, changed, or a metric
is missing / new; 2: bad input. timing.json is not compared (machine-dependent).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scanbench.errors import ScanbenchError
from scanbench.report.compare import (
    DEFAULT_TOLERANCES,
    compare_dirs,
    machine_facts,
    markdown_table,
    parse_tolerances,
    read_reference_file,
    update_reference,
)
from scanbench.stages._cli import report_error


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
    ap.add_argument("--update-reference", action="store_true", help="make --current the new reference")
    args = ap.parse_args(argv)
    if args.update_reference:
        update_reference(Path(args.reference), Path(args.current))
        print(f"reference {args.reference} updated from {args.current}")
        return 0
    meta = read_reference_file(args.reference)
    tolerances = parse_tolerances(args.tol, args.abs_tol, base=meta.get("tolerances"))
    rows = compare_dirs(args.reference, args.current, tolerances)
    ref_machine, here = meta.get("machine", {}), machine_facts()
    for name, m in (("reference   ", ref_machine), ("this machine", here)):
        pins = ", ".join(f"{k}={v}" for k, v in (m.get("isa_pins") or {}).items() if v) or "none"
        avx512 = "avx512f" if "avx512f" in m.get("isa_flags", []) else "no avx512f"
        print(f"{name}: {m.get('cpu', 'unknown CPU')}, {avx512}, ISA pins: {pins}, "
              f"torch {(m.get('versions') or {}).get('torch')}")
    print()
    print(markdown_table(rows, show_all=args.all))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ScanbenchError as err:   # bad input: one line, exit 2 (1 is drift)
        report_error(err)
        sys.exit(2)
