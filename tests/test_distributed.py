"""Data-parallel stages (compute.nproc 2: torchrun, gloo, one CPU thread per rank) give the single run's outputs.

The stages run as DVC runs them (`python -m scanbench.stages.<stage>`), in a folder with a smoke-sized params.yaml,
a manifest of a few real Imagenette images and randomly initialised targets (the numbers need not be good, only
equal): `explain` and `evaluate` for a CNN method (Grad-CAM on EfficientNet-Lite0) and a ViT one (the random map,
whose seeded stream must skip the earlier shard's images; its evaluation adds the seeded calibration maps, and its
`sanity` run the seeded random labels), `features` and `train_scan` (a few DDP steps on the ViT's features).
Tolerances: float16 maps within two float16 steps, metrics and features within float32 rounding, decoder weights
within what 2-rank gradient sums allow after a few steps.
"""
from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from scanbench.backbones import get_backbone, save_target
from scanbench.boxes import CHECKED_COLUMNS
from scanbench.data import build_manifest, class_table
from scanbench.distributed import DistContext, shard
from scanbench.launch import torchrun_command

REPO = Path(__file__).resolve().parents[1]
SMOKE = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())

TRAIN_LR = 1e-5
needs_gloo = pytest.mark.skipif(not (torch.distributed.is_available() and torch.distributed.is_gloo_available()),
                                reason="torch.distributed with gloo is not available")


def test_shards_are_contiguous_blocks_that_concatenate_to_all_images():
    for n in (0, 1, 5, 12, 13):
        for world in (1, 2, 3):
            for align in (1, 4):
                blocks = [shard(n, DistContext(r, world), align) for r in range(world)]
                assert [i for b in blocks for i in b] == list(range(n)), (n, world, align)
                assert all(b.start % align == 0 for b in blocks if len(b))


def test_torchrun_command_is_one_host_unless_rendezvous_flags_are_given():
    cmd = torchrun_command(2, ["-m", "scanbench.stages.explain", "--backbone", "b"], extra="")
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert cmd[3:6] == ["--nproc-per-node", "2", "--standalone"]
    assert cmd[-4:] == ["-m", "scanbench.stages.explain", "--backbone", "b"]   # torchrun's --module: python -m
    multi = torchrun_command(4, ["s.py"], extra="--nnodes 2 --rdzv-backend c10d --rdzv-endpoint h:29500")
    assert "--standalone" not in multi and multi[5:11] == ["--nnodes", "2", "--rdzv-backend", "c10d",
                                                           "--rdzv-endpoint", "h:29500"]


def test_a_stage_run_as_a_module_is_relaunched_as_that_module(monkeypatch):
    """`python -m scanbench.stages.explain ...` re-runs under torchrun as `-m scanbench.stages.explain ...`; a script
    as that script."""
    import types

    from scanbench.launch import entry_argv

    stage = types.ModuleType("__main__")
    stage.__spec__ = types.SimpleNamespace(name="scanbench.stages.explain")
    monkeypatch.setitem(sys.modules, "__main__", stage)
    monkeypatch.setattr(sys, "argv", ["/x/src/scanbench/stages/explain.py", "--backbone", "b"])
    assert entry_argv() == ["-m", "scanbench.stages.explain", "--backbone", "b"]
    stage.__spec__ = None
    monkeypatch.setattr(sys, "argv", ["bench.py", "--rounds", "2"])
    assert entry_argv() == ["bench.py", "--rounds", "2"]


@needs_gloo
def test_global_batch_norm_is_batch_norm_on_one_rank(tmp_path):
    """GlobalBatchNorm2d (gloo's stand-in for SyncBatchNorm) against BatchNorm2d: outputs, input and weight
    gradients, running statistics, in a 1-rank gloo group (2 ranks: the train_scan test below)."""
    import torch.distributed as dist

    from scanbench.distributed import GlobalBatchNorm2d, sync_batch_norm

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        ref = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
        ref[1].weight.data.uniform_(0.5, 1.5)
        glob = copy.deepcopy(ref)
        sync_batch_norm(glob, DistContext(0, 2))   # world 2 in the context: convert (the group has one rank)
        assert type(glob[1]) is GlobalBatchNorm2d and glob[1].state_dict().keys() == ref[1].state_dict().keys()
        for _ in range(2):   # two steps: the running statistics' update is checked twice
            x = (torch.randn(5, 3, 8, 8) * 3 + 1).requires_grad_()
            x2 = x.detach().clone().requires_grad_()
            w = torch.randn(5, 4, 6, 6)
            y_ref, y = ref(x), glob(x2)
            (y_ref * w).sum().backward()
            (y * w).sum().backward()
            torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(x2.grad, x.grad, rtol=1e-4, atol=1e-5)
            for a, b in zip(glob.parameters(), ref.parameters()):   # sums of 180 products: float32 rounding
                torch.testing.assert_close(a.grad, b.grad, rtol=1e-3, atol=1e-4)
        for k, v in ref[1].state_dict().items():
            torch.testing.assert_close(glob[1].state_dict()[k], v, rtol=1e-5, atol=1e-6, msg=k)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- the stages, 1 vs 2 processes

def _params(root: Path, nproc: int) -> dict:
    p = copy.deepcopy(SMOKE)
    p["data"].update(root=str(root), limit_per_class=3)
    p["compute"] = {"device": "cpu", "threads": nproc, "nproc": nproc}   # one thread per rank
    p["explain"]["n_images"] = 5                  # odd: the two shards differ in size
    p["sanity"]["n_images"] = 5
    p["explain"]["batch_size"] = 3
    p["features"].update(n_train=11, n_holdout=4, batch_size=4)
    p["evaluate"].update(engine="torch", bootstrap=50, calibration_maps=2, fractions=[0.0, 0.3, 0.6, 0.9])
    # 11 images in batches of 5: a last batch of 1, so one rank gets no sample; a small lr keeps the few steps
    # near-linear, so that float noise does not grow into a difference of trajectories
    p["scan"].update(batch_size=5, lr=TRAIN_LR)
    return p


@pytest.fixture(scope="module")
def stage_dir(tmp_path_factory, data_root):
    d = tmp_path_factory.mktemp("ddp")
    for nproc in (1, 2):
        (d / f"params{nproc}.yaml").write_text(yaml.safe_dump(_params(data_root, nproc)))
    (d / "data").mkdir()
    manifest, _ = build_manifest(data_root, limit_per_class=3, check_images=False)
    manifest.to_csv(d / "data" / "manifest.csv", index=False)
    # the boxes stage's file for data without boxes
    (d / "data" / "boxes.csv").write_text(",".join(CHECKED_COLUMNS) + "\n")
    torch.manual_seed(0)
    cnn = get_backbone("effnet_lite0")
    save_target(d / "models/targets/effnet_lite0/model.pt", cnn,
                cnn.build(class_indices=class_table(manifest)["imagenet_index"].tolist(), pretrained=False))
    vit = get_backbone("vit_tiny_convstem")
    kwargs = {"num_classes": 10, "width": 32, "heads": 2}
    save_target(d / "models/targets/vit_tiny_convstem/model.pt", vit, vit.build(**kwargs), kwargs)
    return d


def _run(d: Path, stage: str, *args: str, nproc: int = 1) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("SCANBENCH_TORCHRUN_ARGS", None)
    r = subprocess.run([sys.executable, "-m", f"scanbench.stages.{stage}", *args, "--params",
                        f"params{nproc}.yaml"],
                       cwd=d, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"{stage} nproc={nproc} failed:\n{r.stderr[-3000:]}"


def _leaves(obj, prefix=""):
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f"{prefix}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, f"{prefix}[{i}]")
    else:
        yield prefix, obj


def _assert_same_json(a: Path, b: Path) -> None:
    ja, jb = json.loads(a.read_text()), json.loads(b.read_text())
    la, lb = dict(_leaves(ja)), dict(_leaves(jb))
    assert la.keys() == lb.keys()
    for k, va in la.items():
        vb = lb[k]
        if isinstance(va, float) or isinstance(vb, float):
            assert vb == pytest.approx(va, rel=1e-6, abs=1e-9), k
        else:
            assert va == vb, k


@needs_gloo
@pytest.mark.slow   # launches the stages, 1 and 2 processes (torchrun)
@pytest.mark.parametrize("backbone,method", [("effnet_lite0", "gradcam"), ("vit_tiny_convstem", "random")])
def test_explain_and_evaluate_on_two_ranks_equal_one_process(stage_dir, backbone, method):
    d = stage_dir
    for nproc in (1, 2):
        _run(d, "explain", "--backbone", backbone, "--method", method, "--out", f"maps{nproc}/{method}.npz",
             nproc=nproc)
    one, two = np.load(d / f"maps1/{method}.npz"), np.load(d / f"maps2/{method}.npz")
    assert sorted(one.files) == sorted(two.files)
    for key in ("indices", "labels", "classes"):
        np.testing.assert_array_equal(two[key], one[key])
    assert one["maps"].shape[0] == 5 and one["maps"].dtype == np.float16
    # float16 maps in [0, 1]: batch composition may move a value by a float32 ulp, so one float16 step at most
    np.testing.assert_allclose(two["maps"].astype(np.float32), one["maps"].astype(np.float32), atol=1e-3, rtol=0)
    if method == "random":   # the second shard's maps come from the stream position the single run had there
        assert not np.array_equal(two["maps"][3], two["maps"][0])
    # the same maps evaluated by 1 and 2 processes: the same metrics, bootstrap intervals included
    for nproc in (1, 2):
        _run(d, "evaluate", "--backbone", backbone, "--method", method, "--maps", f"maps1/{method}.npz",
             "--out", f"eval{nproc}/{backbone}-{method}.json", nproc=nproc)
    _assert_same_json(d / f"eval1/{backbone}-{method}.json", d / f"eval2/{backbone}-{method}.json")
    if method == "random":
        assert json.loads((d / f"eval1/{backbone}-{method}.json").read_text())["calibration"] is not None
        # sanity: three settings, two seeded streams (the random maps, the random labels) across the shards
        for nproc in (1, 2):
            _run(d, "sanity", "--backbone", backbone, "--method", method, "--out", f"sanity{nproc}.json",
                 "--maps-out", f"sanity_maps{nproc}.json", nproc=nproc)
        _assert_same_json(d / "sanity1.json", d / "sanity2.json")
        # the map similarities: rank 0 scores every image from the shards' gathered maps
        _assert_same_json(d / "sanity_maps1.json", d / "sanity_maps2.json")


@needs_gloo
@pytest.mark.slow   # launches the stages, 1 and 2 processes (torchrun)
def test_features_and_train_scan_on_two_ranks_equal_one_process(stage_dir):
    d = stage_dir
    backbone = "vit_tiny_convstem"
    for nproc in (1, 2):
        _run(d, "features", "--backbone", backbone, "--layer", "default", "--out", f"feat{nproc}", nproc=nproc)
    for subset in ("train", "holdout"):
        a, b = d / f"feat1/default/{subset}", d / f"feat2/default/{subset}"
        assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
        for f in sorted(a.glob("*.npy")):
            x, y = np.load(f), np.load(b / f.name)
            assert x.dtype == y.dtype and x.shape == y.shape, f.name
            if x.dtype.kind == "f":   # float16 features and gradients: one float16 step at most
                np.testing.assert_allclose(y.astype(np.float32), x.astype(np.float32), rtol=2e-3, atol=1e-6,
                                           err_msg=f.name)
            else:
                np.testing.assert_array_equal(y, x, err_msg=f.name)
        assert json.loads((a / "meta.json").read_text()) == json.loads((b / "meta.json").read_text())

    for nproc in (1, 2):   # both train on the single run's features: only the training differs
        _run(d, "train_scan", "--backbone", backbone, "--layer", "default", "--features", "feat1/default",
             "--steps", "4", "--out", f"scan{nproc}", "--no-progress", nproc=nproc)
    one = torch.load(d / "scan1/decoder.pt", weights_only=True)["state_dict"]
    two = torch.load(d / "scan2/decoder.pt", weights_only=True)["state_dict"]
    init = _initial_decoder(d, backbone)
    assert one.keys() == two.keys() == init.keys()
    # Adam's first steps move every weight by about lr whatever its gradient's size, so a weight whose gradient
    # is float noise (e.g. a conv bias before a batch norm, exactly 0 in exact arithmetic) may step the other way
    # on two ranks: a few weights differ by up to 2 lr per step; the rest must agree to float tolerance.
    lr, steps = TRAIN_LR, 4
    weights = [k for k in one if one[k].is_floating_point() and "running" not in k]
    a, b, w0 = (torch.cat([s[k].float().flatten() for k in weights]) for s in (one, two, init))
    assert (a - w0).abs().mean() > 0.5 * lr            # it trained: every weight moved by about lr per step
    diff = (b - a).abs()
    assert diff.max() <= 2 * lr * steps
    assert (diff <= 0.5 * lr).float().mean() >= 0.99, (diff <= 0.5 * lr).float().mean()
    assert diff.mean() <= 0.05 * (a - w0).abs().mean()
    for k in one:   # batch-norm running statistics of the global batch on both (a conv bias that stepped the
        if "running" in k:   # other way before a batch norm moves its running mean by as much)
            torch.testing.assert_close(two[k], one[k], rtol=1e-3, atol=2 * lr * steps, msg=k)
    s1, s2 = (json.loads((d / f"scan{n}/summary.json").read_text()) for n in (1, 2))
    assert s1.keys() == s2.keys()
    for k, v in s1.items():
        if isinstance(v, float):
            assert s2[k] == pytest.approx(v, rel=1e-3, abs=1e-6), k
        else:
            assert s2[k] == v, k
    c1, c2 = ((d / f"scan{n}/curves.csv").read_text().splitlines() for n in (1, 2))
    assert c1[0] == c2[0] and len(c1) == len(c2) == 5   # a row per step (4 steps of 5 over 11 images)
    for r1, r2 in zip(c1[1:], c2[1:]):   # loss terms per step: the same global batches, the same means
        np.testing.assert_allclose(np.array(r2.split(","), float), np.array(r1.split(","), float), rtol=1e-4)


def _initial_decoder(d: Path, backbone: str) -> dict:
    from scanbench.features import load_features
    from scanbench.scan.decoder import build_decoder

    params = _params(Path("."), 1)
    fs = load_features(d / "feat1/default/train")
    torch.manual_seed(params["seed"])
    return build_decoder(get_backbone(backbone), fs.F.shape[1:], params, out_size=fs.images.shape[-1]).state_dict()


@needs_gloo
@pytest.mark.slow   # launches the stages, 1 and 2 processes (torchrun)
def test_a_workers_bad_input_is_one_line_and_exit_2(stage_dir):
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1"}
    env.pop("SCANBENCH_TORCHRUN_ARGS", None)
    r = subprocess.run([sys.executable, "-m", "scanbench.stages.evaluate", "--backbone", "effnet_lite0",
                        "--method", "gradcam", "--maps", "missing.npz", "--out", "x.json", "--params", "params2.yaml"],
                       cwd=stage_dir, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == ("error: maps file missing.npz not found: run the explain stage "
                                                 "first")
