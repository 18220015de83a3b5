"""Stage `prepare`: index the dataset into data/manifest.csv; report converted and unreadable images.

Refuses (one line, nothing written) a tree that the later stages cannot score: fewer than 2 classes, images below
the minimum side, or a val split too small for explain.n_images + features.n_holdout (checked again where those
subsets are drawn, so a later change of those params is caught too). Class folders that are not ImageNet wnids are
the data's own classes (imagenet_index -1); the `head` stage fits a head for them."""
from __future__ import annotations

import sys

from scanbench.config import configured_data_root, data_root
from scanbench.data import build_manifest, check_split_sizes
from scanbench.io import atomic_path, write_json
from scanbench.stages._cli import load_stage_params, profile_results, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, manifest=False)
    ap.add_argument("--out", default="data/manifest.csv")
    ap.add_argument("--report", default=None, help="default: results/<profile>/prepare.json")
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    report_path = args.report or profile_results(params) / "prepare.json"
    root = data_root(params)
    manifest, report = build_manifest(root, params["data"]["splits"],
                                      limit_per_class=params["data"].get("limit_per_class"))
    check_split_sizes(manifest, params)
    with atomic_path(args.out, suffix=".csv") as tmp:
        manifest.to_csv(tmp, index=False)
    counts = manifest.groupby("split").size().to_dict()
    # the root as configured (relative to the repo), not resolved: the same data in another checkout, same bytes
    write_json(report_path, {"data_root": configured_data_root(params), "n_images": report.n_images,
                             "per_split": counts, "n_classes": int(manifest["label"].nunique()),
                             "n_converted_to_rgb": report.n_converted,
                             "unreadable": [{"path": p, "error": e} for p, e in report.unreadable]})
    print(f"indexed {report.n_images} images ({counts}), converted {report.n_converted} to RGB, "
          f"skipped {len(report.unreadable)} unreadable")
    for p, e in report.unreadable:
        print(f"  unreadable: {p}: {e}", file=sys.stderr)


if __name__ == "__main__":
    run_stage(main)
