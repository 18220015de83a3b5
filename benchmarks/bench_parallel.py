"""`explain` + `evaluate` with 1 and 2 processes (compute.nproc; torchrun, gloo on the CPU): the data-parallel
speed-up on the smoke data.

    python benchmarks/bench_parallel.py [--rounds 3] [--out reports/benchmarks/parallel.md]

In a scratch folder: the smoke profile's params (its evaluation images, explain.n_images, fractions, method
settings), a manifest of the smoke data (data.limit_per_class), randomly initialised targets (speed does not
depend on the weights) and the PyTorch forward engine (the scratch folder has no ONNX export). For each
(backbone, method) it runs the two stages as DVC does (`python -m scanbench.stages.explain ...`, then
`...evaluate`), nproc 1 and 2 alternating round by round, and reports the medians of the wall times, start-up
included (each process imports torch; torchrun adds its own start). compute.threads is null: the cores this
process may use, split between the ranks. Run facts, not results: they depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
CASES = [("effnet_lite0", "gradcam"), ("effnet_lite0", "rise"), ("vit_tiny_convstem", "rise")]


def setup(folder: Path, data_root: Path) -> None:
    from scanbench.backbones import get_backbone, save_target
    from scanbench.boxes import CHECKED_COLUMNS
    from scanbench.compute import available_cores
    from scanbench.data import build_manifest, class_table

    smoke = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
    for nproc in (1, 2):
        p = copy.deepcopy(smoke)
        p["data"]["root"] = str(data_root)
        p["compute"] = {"device": "cpu", "threads": None, "nproc": nproc}
        p["evaluate"]["engine"] = "torch"
        (folder / f"params{nproc}.yaml").write_text(yaml.safe_dump(p))
    (folder / "data").mkdir()
    manifest, _ = build_manifest(data_root, limit_per_class=smoke["data"]["limit_per_class"], check_images=False)
    manifest.to_csv(folder / "data" / "manifest.csv", index=False)
    (folder / "data" / "boxes.csv").write_text(",".join(CHECKED_COLUMNS) + "\n")
    torch.manual_seed(0)
    cnn = get_backbone("effnet_lite0")
    save_target(folder / "models/targets/effnet_lite0/model.pt", cnn,
                cnn.build(class_indices=class_table(manifest)["imagenet_index"].tolist(), pretrained=False))
    vit = get_backbone("vit_tiny_convstem")
    kwargs = {"num_classes": int(manifest["label"].nunique()), "width": smoke["targets"]["vit"]["width"],
              "heads": smoke["targets"]["vit"]["heads"]}
    save_target(folder / "models/targets/vit_tiny_convstem/model.pt", vit, vit.build(**kwargs), kwargs)
    print(f"scratch folder {folder}: {len(manifest)} images, {available_cores()} cores", file=sys.stderr)


def run(folder: Path, backbone: str, method: str, nproc: int) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    env.pop("SCANBENCH_TORCHRUN_ARGS", None)
    start = time.perf_counter()
    for stage, args in (("explain", ["--out", f"maps{nproc}/{backbone}-{method}.npz"]),
                        ("evaluate", ["--maps", f"maps{nproc}/{backbone}-{method}.npz",
                                      "--out", f"eval{nproc}/{backbone}-{method}.json"])):
        subprocess.run([sys.executable, "-m", f"scanbench.stages.{stage}", "--backbone", backbone, "--method", method,
                        *args, "--params", f"params{nproc}.yaml"], cwd=folder, env=env, check=True,
                       capture_output=True, text=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "imagenette")
    ap.add_argument("--out", type=Path, default=REPO / "reports" / "benchmarks" / "parallel.md")
    args = ap.parse_args()
    from scanbench.compute import available_cores

    times: dict[tuple[str, str, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-parallel-") as tmp:
        folder = Path(tmp)
        setup(folder, args.data)
        for r in range(args.rounds):
            for backbone, method in CASES:
                # alternate which goes first, so that a drift in the machine's load hits both alike
                for nproc in ((1, 2) if r % 2 == 0 else (2, 1)):
                    t = run(folder, backbone, method, nproc)
                    times.setdefault((backbone, method, nproc), []).append(t)
                    print(f"round {r + 1} {backbone}/{method} nproc={nproc}: {t:.1f} s", file=sys.stderr)
        for backbone, method in CASES:   # a spot check that the runs measured did the same work
            e1 = json.loads((folder / f"eval1/{backbone}-{method}.json").read_text())
            e2 = json.loads((folder / f"eval2/{backbone}-{method}.json").read_text())
            assert e1["n_images"] == e2["n_images"], (backbone, method)
        load = os.getloadavg()
    rows, tot1, tot2 = [], 0.0, 0.0
    for backbone, method in CASES:
        m1 = statistics.median(times[(backbone, method, 1)])
        m2 = statistics.median(times[(backbone, method, 2)])
        tot1, tot2 = tot1 + m1, tot2 + m2
        rows.append(f"| {backbone} | {method} | {m1:.1f} | {m2:.1f} | {m1 / m2:.2f}x |")
    rows.append(f"| **all** | | **{tot1:.1f}** | **{tot2:.1f}** | **{tot1 / tot2:.2f}x** |")
    text = (
        "# explain + evaluate: 1 vs 2 processes (compute.nproc, torchrun, gloo)\n\n"
        f"`python benchmarks/bench_parallel.py --rounds {args.rounds}`: wall seconds of the `explain` then the "
        "`evaluate` stage per backbone and method on the smoke profile's data and settings (randomly "
        "initialised targets, PyTorch forward engine), start-up included; medians of "
        f"{args.rounds} rounds, the two process counts alternated. compute.threads null: {available_cores()} "
        "cores for the one process, split between the two ranks.\n\n"
        f"Machine: {platform.processor() or platform.machine()}, {available_cores()} cores, torch "
        f"{torch.__version__}. **Contended**: other work shared these cores during the run (load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end), so the ratio is indicative only.\n\n"
        "| backbone | method | 1 process (s) | 2 processes (s) | speed-up |\n|---|---|---|---|---|\n"
        + "\n".join(rows) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
