"""Issue-13 research probe (not a pipeline stage; quoted in the session-10 note): ms per training step of the
EfficientNet-size CNN decoder (1280 x 7 x 7 in, widths [128, 96, 64, 32], 56 px out, batch 16, random inputs)
in PyTorch's default (contiguous) memory format and in channels_last, alternated, 3 rounds of 20 steps.
usage: channels_last_probe.py [THREADS]   (default 2)"""
import sys
import time

import torch

from scanbench.scan.decoder import CNNDecoder

torch.manual_seed(0)
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
dec = CNNDecoder(1280, 7, 56, [128, 96, 64, 32])
x = torch.randn(16, 1280, 7, 7)
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
