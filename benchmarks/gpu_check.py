"""The Python parts of benchmarks/gpu_check.sh: on one device,

  decoder  the paper-width SCAN decoders' training throughput (images/s): a step is Eq. 1 masking, decode at the
           paper's 224 px, the loss against the blurred target, backward and Adam, on random features of the
           paper backbones' shapes (ResNetV2-50 stages.3: 2048 x 7 x 7; ViT-B/16 blocks.5: 197 x 768)
  vit      SCAN vs Grad-CAM time per image on ViT-B/16 (`vit_base_patch16_224`) with random weights and a random
           paper-width decoder (timing does not depend on the weights), measured as the `timing` stage measures
           (`scanbench.timing.measure_methods`: batch 1 and batched, interleaved)

  report   gpu_check.md + gpu_check.json from the parts' records and the smoke DAG's facts (the shell script's)

Writes one JSON record per part. `--dry-run` shrinks everything (widths / 8, batch 2, 2 steps, 1 image) so that the
code path can be checked on a CPU in seconds; its numbers mean nothing.

    python benchmarks/gpu_check.py decoder --device cuda --out decoder.json
    python benchmarks/gpu_check.py vit --device cuda --out vit.json
    python benchmarks/gpu_check.py report --dag dag.json --decoder decoder.json --vit vit.json --out reports/benchmarks
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import scanbench  # noqa: F401  (thread policy and ISA pins before torch)

# isort: split
import torch
import yaml

from scanbench.backbones import get_backbone
from scanbench.compute import resolve_device
from scanbench.errors import ScanbenchError
from scanbench.io import write_json
from scanbench.scan.decoder import build_decoder
from scanbench.scan.loss import make_target, scan_loss
from scanbench.scan.masking import gradient_mask, sample_percentiles
from scanbench.timing import device_description, measure_methods

REPO = Path(__file__).resolve().parents[1]
# feature shapes at the paper backbones' SCAN layers (backbones registry), one per family
PAPER_SHAPES = {"cnn": ("resnetv2_50", (2048, 7, 7)), "vit": ("vit_base_patch16_224", (197, 768))}


def paper_scan_params(dry_run: bool) -> dict:
    """profiles/paper.yaml's scan section (widths, out_size, ViT decoder blocks); widths / 8 for a dry run."""
    scan = copy.deepcopy(yaml.safe_load((REPO / "profiles" / "paper.yaml").read_text())["scan"])
    if dry_run:
        scan["widths"] = {f: [max(4, w // 8) for w in ws] for f, ws in scan["widths"].items()}
    return {"scan": scan}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decoder_throughput(device: torch.device, batch: int, steps: int, dry_run: bool) -> dict:
    params = paper_scan_params(dry_run)
    rows = {}
    for family, (backbone, shape) in PAPER_SHAPES.items():
        spec = get_backbone(backbone)
        torch.manual_seed(0)
        dec = build_decoder(spec, shape, params).to(device).train()
        size = dec.kwargs["out_size"]
        F = torch.randn(batch, *shape, device=device)
        G = torch.randn(batch, *shape, device=device) - (1.65 if family == "cnn" else 0.0)   # ~5% / ~50% positive
        images = torch.rand(batch, 3, size, size, device=device)
        grid = dec.kwargs["grid"]
        target = make_target(images, grid)
        opt = torch.optim.Adam(dec.parameters(), 1e-3)

        def step():
            out = dec(gradient_mask(F, G, sample_percentiles(batch).to(device)))
            loss = scan_loss(out, target, 4.0)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return loss

        for _ in range(2):   # warm-up: cuDNN autotuning, allocator
            step()
        sync(device)
        t0 = time.perf_counter()
        for _ in range(steps):
            loss = step()
        sync(device)
        seconds = time.perf_counter() - t0
        if not torch.isfinite(loss).item():
            raise ScanbenchError(f"{family} decoder: the loss is not finite ({loss.item()})")
        rows[family] = {"backbone_shape_of": backbone, "feature_shape": list(shape), "widths": dec.kwargs["widths"],
                        "out_size": size, "batch": batch, "steps": steps,
                        "images_per_s": batch * steps / seconds, "ms_per_step": 1000 * seconds / steps,
                        "n_parameters": sum(p.numel() for p in dec.parameters())}
    return {"device": device_description(device), "dry_run": dry_run, "decoders": rows}


def vit_timing(device: torch.device, n_images: int, batch: int, dry_run: bool) -> dict:
    from scanbench.explainers import make_explainer
    from scanbench.hooks import features_and_grads
    from scanbench.scan.train import save_decoder

    spec = get_backbone("vit_base_patch16_224")
    torch.manual_seed(0)
    model = spec.build(pretrained=False).to(device).eval()    # random weights: the time does not depend on them
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(n_images, 3, spec.input_size, spec.input_size, generator=gen)
    classes = torch.randint(0, 1000, (n_images,), generator=gen)
    layer = spec.resolve_layer(spec.scan_layer)
    _, F, _ = features_and_grads(model, layer, images[:1].to(device), classes[:1].to(device))
    params = paper_scan_params(dry_run)
    torch.manual_seed(0)
    decoder = build_decoder(spec, tuple(F.shape[1:]), params)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "decoder.pt"
        save_decoder(path, decoder, {"backbone": spec.name, "layer": layer, "alpha": 4.0})
        explainers = {"scan": make_explainer("scan", model, spec, decoder_path=str(path), p=95, batch_size=batch),
                      "gradcam": make_explainer("gradcam", model, spec, batch_size=batch)}
        summary = measure_methods(explainers, images, classes, {"batch_size": batch, "n_images_per_method": {}})
    return {"device": device_description(device), "dry_run": dry_run, "backbone": spec.name,
            "weights": "random (timm init)", "decoder_widths": decoder.kwargs["widths"],
            "decoder_out_size": decoder.kwargs["out_size"], "n_images": n_images, "batch": batch,
            "methods": summary,
            "scan_over_gradcam": summary["scan"]["ms_per_image"] / summary["gradcam"]["ms_per_image"]}


def _read(path: Path | None) -> dict | None:
    import json

    if path is None or not path.is_file():
        return None                      # the part failed or timed out: the report says so
    return json.loads(path.read_text())


def report(dag: dict | None, decoder: dict | None, vit: dict | None, compare: str | None = None) -> str:
    """gpu_check.md: what ran, on what, and the numbers; a part without a record is reported as not done."""
    dry = any(r and r.get("dry_run") for r in (dag, decoder, vit))
    lines = ["# GPU check (benchmarks/gpu_check.sh)", ""]
    if dry:
        lines += ["**CPU dry run** (`--cpu-dry-run`): tiny sizes, the code path only; the numbers mean nothing.", ""]
    if dag:
        lines += [f"Machine: {dag.get('gpu') or 'no GPU'}; commit {dag.get('commit', '?')}; "
                  f"{dag.get('started', '')}.", "", "## Smoke DAG", ""]
        if dag.get("repro_rc") is None:
            lines.append(f"Not run (dry run): `dvc dag` rc {dag.get('dag_rc')}, `dvc status` rc {dag.get('status_rc')} "
                         f"in a clone on the smoke profile with compute.device = {dag.get('device')}.")
        else:
            lines.append(f"`dvc repro` of the smoke profile in a clean clone, compute.device = {dag['device']}: "
                         f"rc {dag['repro_rc']}, {dag['repro_seconds']:.0f} s wall"
                         + (" (killed at the time limit)" if dag["repro_rc"] in (124, 137) else "") + ".")
            if dag.get("compare_rc") is not None:
                lines.append("Metrics against the committed CPU reference "
                             f"(`python -m scanbench.stages.compare_metrics`): rc {dag['compare_rc']} (0: every "
                             f"metric within the reference's tolerances); {dag.get('compare_summary', '')}")
            if compare:
                lines += ["", "<details><summary>compare_metrics output</summary>", "", compare.strip(), "",
                          "</details>"]
    lines += ["", "## Paper-width SCAN decoder training throughput", ""]
    if decoder:
        lines += [f"Device: {decoder['device']}. A step: Eq. 1 masking, decode, loss, backward, Adam; random "
                  f"features of the paper backbones' shapes.", "",
                  "| decoder | feature shape (of) | widths | output px | batch | images/s | ms/step | parameters |",
                  "|---|---|---|---|---|---|---|---|"]
        for fam, r in decoder["decoders"].items():
            lines.append(f"| {fam} | {' x '.join(map(str, r['feature_shape']))} ({r['backbone_shape_of']}) | "
                         f"{r['widths']} | {r['out_size']} | {r['batch']} | {r['images_per_s']:.1f} | "
                         f"{r['ms_per_step']:.1f} | {r['n_parameters']:,} |")
    else:
        lines.append("Not measured (the part failed or ran out of time; see the script's output).")
    lines += ["", "## SCAN vs Grad-CAM on ViT-B/16, random weights", ""]
    if vit:
        lines += [f"Device: {vit['device']}. `{vit['backbone']}` ({vit['weights']}), decoder widths "
                  f"{vit['decoder_widths']} at {vit['decoder_out_size']} px, {vit['n_images']} images; "
                  f"`scanbench.timing.measure_methods` (batch 1, then batch {vit['batch']}, interleaved).", "",
                  "| method | ms/image (batch 1) | IQR | ms/image (batched) |", "|---|---|---|---|"]
        for m, r in vit["methods"].items():
            lines.append(f"| {m} | {r['ms_per_image']:.1f} | {r['ms_iqr'][0]:.1f} - {r['ms_iqr'][1]:.1f} | "
                         f"{r['ms_per_image_batched']:.1f} |")
        lines += ["", f"SCAN / Grad-CAM time per image (batch 1): **{vit['scan_over_gradcam']:.2f}x**."]
    else:
        lines.append("Not measured (the part failed or ran out of time; see the script's output).")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["decoder", "vit", "report"])
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (a dry run)")
    ap.add_argument("--out", type=Path, required=True, help="the JSON record (report: the output folder)")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes: checks the code path, numbers mean nothing")
    ap.add_argument("--dag", type=Path, help="report: the smoke DAG's facts")
    ap.add_argument("--decoder", type=Path, help="report: the decoder part's record")
    ap.add_argument("--vit", type=Path, help="report: the vit part's record")
    ap.add_argument("--compare", type=Path, help="report: compare_metrics' output on the smoke run")
    args = ap.parse_args(argv)
    if args.part == "report":
        from scanbench.io import write_text

        parts = {"dag": _read(args.dag), "decoder": _read(args.decoder), "vit": _read(args.vit)}
        compare = args.compare.read_text() if args.compare and args.compare.is_file() else None
        text = report(**parts, compare=compare)
        write_json(args.out / "gpu_check.json", parts)
        write_text(args.out / "gpu_check.md", text)
        print(text)
        return 0 if all(parts.values()) else 1
    try:
        device = resolve_device(args.device)
        if args.part == "decoder":
            record = decoder_throughput(device, batch=2 if args.dry_run else 32, steps=2 if args.dry_run else 30,
                                        dry_run=args.dry_run)
        else:
            record = vit_timing(device, n_images=1 if args.dry_run else 32, batch=1 if args.dry_run else 16,
                                dry_run=args.dry_run)
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    write_json(args.out, record)
    print(f"{args.part}: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
