"""Issue-13 research probe (not a pipeline stage; quoted in the session-9 note): where one SCAN decoder training
step's time goes (batch loading, masking, target, forward, backward, optimiser), 50 steps after 10 warm-up, on the
committed default run's features. Run from a checkout holding a default-profile run, PYTHONPATH=src.
usage: probe_step.py BACKBONE"""
import time, sys, numpy as np, torch
from scanbench.config import load_params
from scanbench.backbones import get_backbone
from scanbench.features import load_features, feature_grid
from scanbench.scan.train import load_batch, decoder_input, build_decoder
from scanbench.scan.loss import make_target, scan_loss
from scanbench.scan.masking import sample_percentiles
from scanbench.compute import resolve
bb = sys.argv[1]
p = load_params("params.yaml"); resolve(p)
print("threads", torch.get_num_threads())
spec = get_backbone(bb); fs = load_features(f"features/{bb}/default/train")
s = p["scan"]
t = dict(load=0., inp=0., target=0., fwd=0., bwd=0., opt=0.)
gen = torch.Generator().manual_seed(0); n = len(fs); bs = int(s["batch_size"])
# the stage's settings, read from params as train_decoder reads them
alpha, lam, lr = float(p["alpha"]), float(s.get("lambda_c", 0.1)), float(s["lr"])
p_low, p_high = s.get("p_train_low", 70), s.get("p_train_high", 100)
gridn = feature_grid(fs.F.shape[1:], spec.family, spec.grid)
dec = build_decoder(spec, fs.F.shape[1:], p, out_size=fs.images.shape[-1]); opt = torch.optim.Adam(dec.parameters(), lr)
for i in range(60):
    b = np.sort(np.random.default_rng(i).choice(n, bs, replace=False))
    a = time.perf_counter(); F, G, im = load_batch(fs, b, "cpu"); t1 = time.perf_counter()
    pp = sample_percentiles(bs, p_low, p_high, generator=gen); x = decoder_input(F, G, pp, "full"); t2 = time.perf_counter()
    tg = make_target(im, gridn, "full"); t3 = time.perf_counter()
    out = dec(x); terms = scan_loss(out, tg, alpha, lam, "full"); t4 = time.perf_counter()
    opt.zero_grad(); terms["loss"].backward(); t5 = time.perf_counter(); opt.step(); t6 = time.perf_counter()
    if i >= 10:
        for k, v in zip(t, (t1 - a, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t6 - t5)): t[k] += v
tot = sum(t.values()); print(bb, {k: f"{v/50*1000:.1f} ms ({v/tot:.0%})" for k, v in t.items()}, f"total {tot/50*1000:.1f} ms/step")
