"""Stage `report`: metric JSONs, Tables I-IV and VI-IX (CSV + Markdown), figures (PNG), reports/claims.md (the
paper's claims with verdicts, also in summary.json under `claims`) and reports/README.md.

    python -m scanbench.stages.report [--params params.yaml] [--results results/<profile>] [--maps maps]
                                      [--out reports]

Reads exactly the files of one run that the params name (scanbench.report.result_files); a missing one is a
one-line error naming the stage to run, and so is one that `dvc.lock` says was made with other params, from other
inputs (another data root) or not by its stage (scanbench.report.provenance): a report never mixes runs. Table V
(timing) is written by the `timing` stage.
"""
from __future__ import annotations

import sys
from pathlib import Path

from scanbench.errors import ScanbenchError
from scanbench.io import write_text
from scanbench.report.claims import build_claims, claims_summary, render_claims
from scanbench.report.metrics import build_metrics, write_metrics
from scanbench.report.paired import load_results_with_pairs
from scanbench.report.provenance import check_provenance
from scanbench.report.results import families_of, result_files
from scanbench.report.tables import build_tables, write_table
from scanbench.stages._cli import load_stage_params, profile_results, run_stage, stage_parser


def make_image_loader(params: dict, manifest_path: Path):
    """(manifest rows, side) -> N x side x side x 3 in [0, 1]; None when the data cannot be read."""
    from scanbench.config import data_root
    from scanbench.data import load_images, load_manifest

    try:
        manifest = load_manifest(manifest_path)
        root = data_root(params)
    except ScanbenchError as err:
        print(f"warning: figures drawn without images ({err})", file=sys.stderr)
        return None

    def load(indices, side):
        paths = manifest["path"].iloc[list(indices)].tolist()
        return load_images(root, paths, side).permute(0, 2, 3, 1).cpu().numpy()

    return load


def manifest_class_names(manifest_path: Path) -> list[str] | None:
    """Class name per label (the manifest's class_name column), for the qualitative grids' rows; None if unreadable."""
    from scanbench.data import load_manifest

    try:
        manifest = load_manifest(manifest_path)
    except ScanbenchError:
        return None
    if "class_name" not in manifest:
        return None
    names = dict(zip(manifest["label"].astype(int), manifest["class_name"].astype(str)))
    return [names.get(c, f"class {c}") for c in range(max(names, default=-1) + 1)]


def _repo_relative(path: Path) -> Path:
    """`path` relative to the working directory (the repo root, where DVC runs stages), as dvc.lock names files."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:      # outside the repo: no lock entry names it
        return path


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--results", default=None, help="this run's results folder (default: results/<profile>)")
    ap.add_argument("--maps", default="maps")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--no-figures", action="store_true", help="skip the figures (tables and metrics only)")
    args = ap.parse_args(argv)

    params = load_stage_params(args)
    results_dir = Path(args.results) if args.results else profile_results(params)
    out = Path(args.out)
    for sub in ("metrics", "tables", "figures"):  # DVC outputs must exist even when a part is empty
        (out / sub).mkdir(parents=True, exist_ok=True)
    check_provenance(_repo_relative(results_dir / f.path) for f in result_files(params))
    results = load_results_with_pairs(results_dir, params)   # + paired differences to SCAN / centre prior
    metrics = build_metrics(results, scan_alpha=params.get("alpha"))
    claims = build_claims(results, metrics, params, families_of(params))
    metrics["summary"]["claims"] = claims_summary(claims)   # verdicts as numbers: 1 / 0 / -1, keyed by name
    metric_files = write_metrics(metrics, out / "metrics")
    tables = build_tables(results, params)
    for t in tables:
        write_table(t, out / "tables")

    figures = []
    if not args.no_figures:
        from scanbench.report.figures import render_figures

        figures = render_figures(results, tables, params, args.maps, results_dir, out / "figures",
                                 make_image_loader(params, args.manifest),
                                 class_names=manifest_class_names(args.manifest))

    from scanbench.report.readme import render_readme

    write_text(out / "claims.md", render_claims(claims, params.get("profile", "unknown")))
    write_text(out / "README.md", render_readme(params, metrics, tables, figures, out, results_dir))
    print(f"report: {len(metric_files)} metric files, {len(tables)} tables, {len(figures)} figures -> {out}/")


if __name__ == "__main__":
    run_stage(main)
