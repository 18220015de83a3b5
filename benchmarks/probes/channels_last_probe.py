"""Issue-13 research probe (not a pipeline stage; quoted in the session-10 note): ms per training step of the
EfficientNet-size CNN decoder (1280 x 7 x 7 in, params' scan widths and batch size, 56 px out, random inputs)
in PyTorch's default (contiguous) memory format and in channels_last, alternated, 3 rounds of 20 steps.
Run from the repo root (reads params.yaml). usage: channels_last_probe.py [THREADS]   (default 2)"""
import sys
import time

import torch

from scanbench.backbones import get_backbone
from scanbench.config import load_params
from scanbench.scan.decoder import build_decoder

torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
params = load_params("params.yaml")
dec = build_decoder(get_backbone("effnet_lite0"), (1280, 7, 7), params, out_size=56)
x = torch.randn(int(params["scan"]["batch_size"]), 1280, 7, 7)
opt = torch.optim.Adam(dec.parameters(), 1e-3)


def step(d, xx):
    out = d(xx)
    loss = out.float().pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()


res = {}
for _ in range(3):
    for mode in ("contiguous", "channels_last"):
        fmt = torch.channels_last if mode == "channels_last" else torch.contiguous_format
        d, xx = dec.to(memory_format=fmt), x.contiguous(memory_format=fmt)
        for _ in range(3):
            step(d, xx)
        t = time.perf_counter()
        for _ in range(20):
            step(d, xx)
        res.setdefault(mode, []).append(round((time.perf_counter() - t) / 20 * 1000, 1))
print(res)
