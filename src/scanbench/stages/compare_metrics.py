"""CI: compare the metric tables a run produced against the committed reference; fail on drift.

    python pipeline/compare_metrics.py --reference reports/reference/smoke --current reports/metrics \
        [--abs-tol 0.5] [--tol 'explanations/*/methods/lime=2' ...] [--all]
    python pipeline/compare_metrics.py --update-reference --reference reports/reference/smoke \
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

sys.path.insert(0, str(Path(__file__).parent))

from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.report.compare import (DEFAULT_TOLERANCES, REFERENCE_FILE, compare_dirs, machine_facts,  # noqa: E402
                                      markdown_table, parse_tolerances, read_reference_file)


def update_reference(reference: Path, current: Path) -> None:
    """Replace the reference's metric files by the current ones; refresh the machine facts, keep the rest."""
    import shutil

    import yaml

    from scanbench.io import write_text

    if not current.is_dir():
        raise ScanbenchError(f"metrics folder {current} does not exist: run the pipeline first")
    meta = read_reference_file(reference)
    reference.mkdir(parents=True, exist_ok=True)
    for old in reference.glob("*.json"):
        old.unlink()
    for new in sorted(current.glob("*.json")):
        shutil.copyfile(new, reference / new.name)
    meta["machine"] = machine_facts()
    header = "# The machine and settings this reference was made with, and the tolerances CI allows against it.\n"
    write_text(reference / REFERENCE_FILE, header + yaml.safe_dump(meta, sort_keys=False, width=110))
    print(f"reference {reference} updated from {current}")


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
        return 0
    meta = read_reference_file(args.reference)
    tolerances = parse_tolerances(args.tol, args.abs_tol, base=meta.get("tolerances"))
    rows = compare_dirs(args.reference, args.current, tolerances)
    ref_machine, here = meta.get("machine", {}), machine_facts()
    for name, m in (("reference   ", ref_machine), ("this machine", here)):
        pins = ", ".join(f"{k}={v}" for k, v in (m.get("isa_pins") or {}).items() if v) or "none"
        print(f"{name}: {m.get('cpu', 'unknown CPU')}, {'avx512f' if 'avx512f' in m.get('isa_flags', []) else 'no avx512f'}"
              f", ISA pins: {pins}, torch {(m.get('versions') or {}).get('torch')}")
    print()
    print(markdown_table(rows, show_all=args.all))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
