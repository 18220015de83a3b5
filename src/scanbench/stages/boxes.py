"""Stage `boxes`: check the data root's optional `boxes.csv`, or the file params `data.boxes` names (object boxes for
the localisation metrics), and write data/boxes.csv, always: the checked boxes with each image's width and height,
or the header alone when there are none (DVC deps cannot be optional, so `evaluate` depends on this file instead).

The stage is `always_changed` in dvc.yaml: DVC cannot see a file appear in the data root, so it runs on every
`dvc repro` (a fraction of a second) and the stages after it re-run only when data/boxes.csv changes. A bad row is
one line naming the file and line (exit 2); boxes of images the manifest does not index are skipped and counted."""
from __future__ import annotations

from scanbench.boxes import boxes_file, read_boxes, write_checked_boxes
from scanbench.config import data_root
from scanbench.data import load_manifest
from scanbench.stages._cli import load_stage_params, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__)
    ap.add_argument("--out", default="data/boxes.csv")
    args = ap.parse_args(argv)
    params = load_stage_params(args)
    root = data_root(params)
    manifest = load_manifest(args.manifest)
    source = boxes_file(params, root)
    boxes, skipped = read_boxes(root, manifest["path"].astype(str).tolist(), source)
    write_checked_boxes(boxes, args.out)
    if not source.is_file():
        print(f"no {source.name} in {root} (data.boxes: null): no localisation metrics ({args.out}: header only)")
        return
    print(f"{len(boxes)} box(es) on {boxes['path'].nunique()} image(s) from {source} -> {args.out}"
          + (f"; skipped {skipped} row(s) of images the manifest does not index" if skipped else ""))


if __name__ == "__main__":
    run_stage(main)
