"""Benchmark: a SCAN decoder training step, before and after the 56-px redesign, one run.

"before": the earlier decoder (reconstruction at the input size, transposed-conv k3 s2 stages, the default
profile's widths of then: CNN [128, 96, 64, 32, 16, 8], ViT [96, 64, 48, 32, 16]); "after": `build_decoder`
with params.yaml's scan section (reconstruction at scan.out_size / 8 px per feature cell, conv + bilinear x2).
A step = Eq. 1 masking (gradients ~5% positive for the CNN's conv_head, ~50% for the ViT), decode, the loss
against the blurred target at the decoder's size, backward, Adam. Inference = masking + decode, no grad.
The settings alternate over the rounds (before, after, before, ...); medians per image.
Prints and writes reports/benchmarks/decoder_step.{json,md}.

    python benchmarks/bench_decoder.py [--rounds 3] [--batch 16]
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import scanbench  # noqa: F401  (thread policy and ISA pins before torch)

# isort: split
import torch
import torch.nn as nn

from scanbench.backbones import get_backbone
from scanbench.compute import resolve
from scanbench.config import load_params
from scanbench.io import write_json, write_text
from scanbench.scan.decoder import Bottleneck, build_decoder
from scanbench.scan.loss import make_target, scan_loss
from scanbench.scan.masking import gradient_mask, sample_percentiles

OLD_WIDTHS = {"cnn": [128, 96, 64, 32, 16, 8], "vit": [96, 64, 48, 32, 16]}


class OldUpsampler(nn.Module):
    """The earlier decoder's stages: 2 bottlenecks, then ConvTranspose2d(k3, s2) per x2, up to the input size."""

    def __init__(self, widths, stages):
        super().__init__()
        layers = []
        for i in range(stages):
            layers += [Bottleneck(widths[i]), Bottleneck(widths[i]),
                       nn.ConvTranspose2d(widths[i], widths[i + 1], 3, stride=2, padding=1, output_padding=1)]
        self.stages = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.BatchNorm2d(widths[stages]), nn.ReLU(inplace=True),
                                  nn.Conv2d(widths[stages], 4, 3, padding=1))

    def forward(self, x):
        y = self.head(self.stages(x))
        return torch.cat([y[:, :1], torch.tanh(y[:, 1:])], dim=1)


def old_decoder(family: str, feat_shape, spec, params) -> nn.Module:
    """The new decoder with its upsampling stages swapped for the old ones (same front: projection / blocks)."""
    dec = build_decoder(spec, feat_shape, {"scan": {**params["scan"], "out_size": spec.input_size,
                                                    "widths": OLD_WIDTHS}})
    dec.up = OldUpsampler(dec.kwargs["widths"], len(dec.kwargs["widths"]) - 1)
    return dec


def workload(family: str, which: str, params: dict, batch: int):
    spec = get_backbone("effnet_lite0" if family == "cnn" else "vit_tiny_convstem")
    shape = (1280, 7, 7) if family == "cnn" else (65, 192)
    torch.manual_seed(0)
    dec = old_decoder(family, shape, spec, params) if which == "before" else build_decoder(spec, shape, params)
    size = spec.input_size if which == "before" else dec.kwargs["out_size"]
    F = torch.randn(batch, *shape)
    G = torch.randn(batch, *shape) - (1.65 if family == "cnn" else 0.0)   # ~5% / ~50% positive
    images = torch.rand(batch, 3, size, size)
    grid = dec.kwargs["grid"]
    opt = torch.optim.Adam(dec.parameters(), 1e-3)

    def step():
        dec.train()
        out = dec(gradient_mask(F, G, sample_percentiles(batch)))
        loss = scan_loss(out, make_target(images, grid), 4.0)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()

    @torch.no_grad()
    def infer():
        dec.eval()
        dec(gradient_mask(F, G, 95.0))

    return step, infer, size


def median_ms(fn, n: int, batch: int) -> float:
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000 / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path("reports/benchmarks"))
    args = ap.parse_args()
    params = load_params("params.yaml")
    resolve(params)   # compute.threads (null: every core); the decoders run on the CPU here
    loads = {(f, w): workload(f, w, params, args.batch) for f in ("cnn", "vit") for w in ("before", "after")}
    times: dict = {k: {"step": [], "infer": []} for k in loads}
    for _ in range(args.rounds):
        for key, (step, infer, _) in loads.items():
            times[key]["step"].append(median_ms(step, args.repeats, args.batch))
            times[key]["infer"].append(median_ms(infer, args.repeats, args.batch))
    rows = []
    for f in ("cnn", "vit"):
        b, a = (times[(f, w)] for w in ("before", "after"))
        row = {"family": f, "size_before": loads[(f, "before")][2], "size_after": loads[(f, "after")][2]}
        for kind in ("step", "infer"):
            row[f"{kind}_ms_before"] = round(statistics.median(b[kind]), 2)
            row[f"{kind}_ms_after"] = round(statistics.median(a[kind]), 2)
            row[f"{kind}_ratio"] = round(row[f"{kind}_ms_before"] / row[f"{kind}_ms_after"], 2)
        rows.append(row)
    lines = ["# SCAN decoder: cost per image, before / after the 56-px redesign (one run)", "",
             f"`python benchmarks/bench_decoder.py --rounds {args.rounds} --batch {args.batch}`; medians over "
             f"alternating rounds, ms per image; machine noise cancels in the ratios, not in the milliseconds.", "",
             "| decoder | output px before -> after | train step before | after | ratio | inference before | "
             "after | ratio |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['family']} | {r['size_before']} -> {r['size_after']} | {r['step_ms_before']} | "
                     f"{r['step_ms_after']} | {r['step_ratio']}x | {r['infer_ms_before']} | {r['infer_ms_after']} | "
                     f"{r['infer_ratio']}x |")
    text = "\n".join(lines) + "\n"
    print(text)
    write_json(args.out / "decoder_step.json", {"rounds": args.rounds, "batch": args.batch, "rows": rows})
    write_text(args.out / "decoder_step.md", text)


if __name__ == "__main__":
    main()
