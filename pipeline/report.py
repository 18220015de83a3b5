"""Stage `report`: metric JSONs, Tables I-IX (CSV + Markdown), figures (PNG) and reports/README.md.

    python pipeline/report.py [--params params.yaml] [--results results] [--maps maps] [--out reports]

Reads whatever the earlier stages left under results/ and maps/; a stage that did not run leaves empty
cells (and a note row), never invented numbers.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402

from scanbench.config import load_params  # noqa: E402
from scanbench.errors import ScanbenchError  # noqa: E402
from scanbench.io import write_text  # noqa: E402
from scanbench.report import build_metrics, collect_results, restrict_to_params, write_metrics  # noqa: E402
from scanbench.report.tables import ablation_alpha, build_tables, load_paper_values, write_table  # noqa: E402


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
        return load_images(root, paths, side).permute(0, 2, 3, 1).numpy()

    return load


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--results", default="results")
    ap.add_argument("--maps", default="maps")
    ap.add_argument("--manifest", default="data/manifest.csv")
    ap.add_argument("--out", default="reports")
    ap.add_argument("--stage-times", default="logs/stage_times.json",
                    help="wall times logged by the stage scripts (pipeline/_common.py)")
    ap.add_argument("--no-figures", action="store_true", help="skip the figures (tables and metrics only)")
    args = ap.parse_args()

    params = load_params(args.params)
    out = Path(args.out)
    for sub in ("metrics", "tables", "figures"):  # DVC outputs must exist even when a part is empty
        (out / sub).mkdir(parents=True, exist_ok=True)
    results = restrict_to_params(collect_results(args.results, stage_times=args.stage_times), params)
    paper = load_paper_values()
    metrics = build_metrics(results, default_alpha=params.get("scan", {}).get("alpha"))
    metric_files = write_metrics(metrics, out / "metrics")

    tables = build_tables(results, metrics, paper, params)
    table_files = {t.stem: write_table(t, out / "tables") for t in tables}

    figures = []
    if not args.no_figures:
        from scanbench.report.figures import render_figures

        loader = make_image_loader(params, Path(args.manifest))
        figures = render_figures(results, args.maps, out / "figures", paper, loader, alpha=ablation_alpha(params),
                                 results_dir=args.results)

    from scanbench.report.readme import render_readme

    write_text(out / "README.md", render_readme(params, results, metrics, tables, figures, out,
                                                metric_files, table_files))
    print(f"report: {len(metric_files)} metric files, {len(tables)} tables, {len(figures)} figures -> {out}/")


if __name__ == "__main__":
    run_stage(main)
