"""params `compute` (device, threads, nproc) and device propagation.

There is no GPU on the machine these tests run on, so device propagation is checked on PyTorch's "meta" device:
a model moved there computes shapes only, and an op that mixes a meta tensor with a CPU one fails ("Tensor on
device cpu is not on the expected device meta"), which is exactly the bug a CPU-built tensor would be on a GPU.
What meta cannot run (numpy round trips: pytorch-grad-cam's weighting, LIME, the perturbation test's scoring) is
covered by the static checks at the end: no `.numpy()` without `.cpu()`, and every tensor the explainers, metrics
and decoder code create names its device (or is a seeded CPU draw moved afterwards).
"""
from __future__ import annotations

import ast
import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from scanbench.compute import module_device, resolve, resolve_device, thread_count
from scanbench.config import compute_params
from scanbench.errors import ScanbenchError

REPO = Path(__file__).resolve().parents[1]
META = torch.device("meta")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-CUDA error; this machine has CUDA")


# ---------------------------------------------------------------- params

def test_defaults_and_profiles():
    assert compute_params({}) == {"device": "auto", "threads": None, "nproc": 1}
    for name in ("default", "smoke", "paper"):
        params = yaml.safe_load((REPO / "profiles" / f"{name}.yaml").read_text())
        assert compute_params(params) == {"device": "auto", "threads": None, "nproc": 1}, name


@pytest.mark.parametrize("section,needle", [
    ({"device": "gpu"}, "compute.device must be auto, cpu, cuda or cuda:N (got 'gpu')"),
    ({"device": "cuda:x"}, "compute.device must be"),
    ({"device": 0}, "compute.device must be"),
    ({"threads": 0}, "compute.threads must be an integer >= 1"),
    ({"threads": True}, "compute.threads must be an integer >= 1"),
    ({"threads": 1.5}, "compute.threads must be an integer >= 1"),
    ({"nproc": 0}, "compute.nproc must be an integer >= 1"),
    ({"nproc": 2, "device": "cuda:1"}, "pins one GPU, but compute.nproc = 2 runs a process per GPU"),
])
def test_bad_compute_params_are_one_line(section, needle):
    with pytest.raises(ScanbenchError) as err:
        compute_params({"compute": section})
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_load_params_checks_compute(tmp_path):
    from scanbench.config import load_params

    params = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
    params["compute"]["nproc"] = 0
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(ScanbenchError, match="compute.nproc must be an integer >= 1"):
        load_params(tmp_path / "params.yaml")
    params["compute"]["nproc"] = 4   # data-parallel stages (tests/test_distributed.py)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert load_params(tmp_path / "params.yaml")["compute"]["nproc"] == 4


def test_torchrun_workers_share_the_cores_and_take_a_gpu_each(monkeypatch):
    from scanbench import compute

    params = {"compute": {"device": "cpu", "threads": 8, "nproc": 2}}
    assert compute.thread_count(params) == 8   # a plain process (the launcher)
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert compute.thread_count(params) == 4
    assert compute.thread_count({"compute": {"device": "cpu", "threads": 1, "nproc": 2}}) == 1   # never 0
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert compute.resolve_device("cuda") == torch.device("cuda:1")
    assert compute.resolve_device("auto") == torch.device("cuda:1")


def test_resolve_cpu_and_threads():
    saved = torch.get_num_threads()
    try:
        assert resolve({"compute": {"device": "cpu", "threads": 1}}) == torch.device("cpu")
        assert torch.get_num_threads() == 1
        assert thread_count({"compute": {"threads": None}}) == (os.cpu_count() or 1)
        expected = "cuda" if torch.cuda.is_available() else "cpu"
        assert resolve({"compute": {"device": "auto", "threads": 1}}).type == expected
    finally:
        torch.set_num_threads(saved)


@no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_cuda_is_one_line(device):
    with pytest.raises(ScanbenchError) as err:
        resolve_device(device)
    msg = str(err.value)
    assert f"compute.device is {device!r} but this machine has no CUDA device" in msg and "\n" not in msg


@no_cuda
def test_stage_with_cuda_on_a_cpu_machine_exits_2(tmp_path):
    """A stage asked for CUDA where there is none: one line, exit 2, before any work (nothing written)."""
    params = yaml.safe_load((REPO / "profiles" / "smoke.yaml").read_text())
    params["compute"]["device"] = "cuda"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    res = subprocess.run([sys.executable, "-m", "scanbench.stages.features", "--backbone", "effnet_lite0"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 2, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: compute.device is 'cuda' but this machine has no CUDA device")
    assert "set compute.device to auto or cpu" in last
    assert "Traceback" not in res.stderr and not (tmp_path / "features").exists()


def test_every_model_stage_resolves_compute():
    """No hard-coded thread count, and every stage that builds a model or decoder resolves compute (and lists
    its params in dvc.yaml)."""
    for path in [*(REPO / "benchmarks").glob("*.py"), *CODE]:
        for line in path.read_text().splitlines():
            # the one exception: bench_timing_agreement's load generator is one busy thread by design
            if not line.startswith("HOG = "):
                assert not re.search(r"set_num_threads\(\s*\d", line), f"{path.name}: {line.strip()}"
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        body = stage.get("do", stage)
        module = body["cmd"].split()[2]   # python -m scanbench.stages.<stage>
        script = REPO / "src" / (module.replace(".", "/") + ".py")
        src = script.read_text()
        builds = any(k in src for k in ("load_target", "ScanScorer", "train_decoder", "load_decoder", "spec.build("))
        if builds:
            assert "compute_device(params)" in src, f"{script.name} builds a model but does not resolve compute"
            assert {"compute.device", "compute.threads"} <= set(map(str, body["params"])), name


# ---------------------------------------------------------------- device propagation (meta device)

@pytest.fixture(scope="module")
def meta_vit(tiny_vit):
    model, spec = tiny_vit
    return copy.deepcopy(model).to(META).eval(), spec


def _meta_images(spec, b=2):
    return torch.rand(b, 3, spec.input_size, spec.input_size).to(META)


# RISE reads each image's class as a Python int (.item(): meta has no values), so its masks are checked below
@pytest.mark.parametrize("method", ["raw_attention", "rollout", "lrp", "partial_lrp", "transformer_attribution",
                                    "ag_cam", "random", "centre"])
def test_explainers_run_on_the_models_device(meta_vit, method):
    from scanbench.explainers.base import make_explainer

    model, spec = meta_vit
    kw = {"n_masks": 6, "s": 2, "forward_batch_size": 3} if method == "rise" else {}
    explainer = make_explainer(method, model, spec, batch_size=2, **kw)
    assert explainer.device == META
    maps = explainer.explain(_meta_images(spec), torch.tensor([1, 2]))
    assert maps.device == META and maps.shape == (2, spec.input_size, spec.input_size)


def test_rise_masks_on_the_inputs_device(meta_vit):
    from scanbench.explainers.base import make_explainer

    model, spec = meta_vit
    rise = make_explainer("rise", model, spec, n_masks=6, s=2, forward_batch_size=3)
    cpu = rise.masks(0, 3, 16, 16)
    assert rise.masks(0, 3, 16, 16, META).device == META and cpu.device == torch.device("cpu")
    assert cpu.shape == (3, 16, 16)


def test_scan_explainer_and_decoder_step_on_the_models_device(meta_vit, tiny_vit, tmp_path):
    from scanbench.hooks import features_and_grads
    from scanbench.scan.decoder import build_decoder
    from scanbench.scan.explainer import SCANExplainer
    from scanbench.scan.loss import make_target, scan_loss
    from scanbench.scan.masking import sample_percentiles
    from scanbench.scan.train import decoder_input, save_decoder

    cpu_model, spec = tiny_vit
    model, _ = meta_vit
    x = _meta_images(spec)
    _, F, G = features_and_grads(model, spec.scan_layer, x, torch.tensor([0, 1]))
    assert F.device == META and G.device == META
    params = {"scan": {"widths": {"vit": [16, 8, 8, 8]}, "vit_blocks": 1, "vit_heads": 2, "out_size": None}}
    decoder = build_decoder(spec, tuple(F.shape[1:]), params).to(META)
    opt = torch.optim.Adam(decoder.parameters(), lr=1e-3)
    # Eq. 1's mask needs values (how many positive gradients: .item()), which meta lacks: the "no_mask"
    # variant decodes F itself; P is a CPU draw that gradient_mask moves to G's device
    sample_percentiles(2, 70, 100, generator=torch.Generator().manual_seed(0))
    out = decoder(decoder_input(F, G, 95.0, "no_mask"))
    size = out.shape[-1]
    target = make_target(torch.nn.functional.interpolate(x, size=size), spec.grid)
    terms = scan_loss(out, target, alpha=4.0)
    terms["loss"].backward()
    opt.step()
    assert all(q.device == META for q in decoder.parameters())

    # the explainer loads its checkpoint onto the model's device
    path = tmp_path / "decoder.pt"
    save_decoder(path, build_decoder(spec, tuple(F.shape[1:]), params),
                 {"backbone": spec.name, "layer": spec.scan_layer, "alpha": 4.0, "variant": "no_mask"})
    explainer = SCANExplainer(model, spec, decoder_path=str(path), p=95, batch_size=2)
    assert explainer.decoder_device == META
    maps, recon = explainer.explain_with_reconstruction(x, torch.tensor([0, 1]))
    assert maps.device == META and recon.device == META


class _Reached(Exception):
    pass


def test_perturbation_buffers_follow_the_images():
    """The perturbed copies are built on the images' device (meta cannot be scored: the forward stops there)."""
    from scanbench.metrics.perturbation import perturbation_correct, removal_rank

    images = torch.rand(2, 3, 8, 8).to(META)
    maps = torch.rand(2, 8, 8)          # maps and labels may come from the CPU: they follow the images

    def forward(batch):
        assert batch.device == META and batch.shape[0] == 2 * (1 + 2 * 2)
        raise _Reached

    with pytest.raises(_Reached):
        perturbation_correct(forward, images, maps, torch.tensor([0, 1]), [0.0, 0.25, 0.5])
    assert removal_rank(maps.to(META), "pos").device == META


def test_forward_engine_returns_logits_on_the_inputs_device(tiny_cnn):
    from scanbench.engine import ForwardEngine, engine_kind

    model, spec = tiny_cnn
    engine = ForwardEngine(model, "torch", batch_size=4)
    assert engine.device == torch.device("cpu") and engine.kind == "torch"
    assert engine(torch.rand(3, 3, spec.input_size, spec.input_size)).device == torch.device("cpu")
    assert engine_kind("onnx", "cpu") == "onnx" and engine_kind("torch", "cpu") == "torch"


def test_onnx_on_a_gpu_without_its_cuda_provider_is_the_torch_engine(monkeypatch):
    """Naming a CUDA device needs no GPU: the choice depends on ONNX Runtime's providers only."""
    from scanbench import engine

    monkeypatch.setattr(engine, "onnx_providers", lambda: ["CPUExecutionProvider"])
    assert engine.engine_kind("onnx", "cuda") == "torch" and engine.engine_kind("onnx", "cuda:1") == "torch"
    monkeypatch.setattr(engine, "onnx_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert engine.engine_kind("onnx", "cuda") == "onnx"
    assert engine.engine_kind("torch", "cuda") == "torch"


def test_module_device():
    assert module_device(torch.nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(torch.nn.Linear(2, 2).to(META)) == META
    assert module_device(torch.nn.ReLU()) == torch.device("cpu")


# ---------------------------------------------------------------- static checks (what meta cannot run)

CODE = list((REPO / "src" / "scanbench").rglob("*.py"))


def test_no_numpy_without_cpu():
    """`.numpy()` of a CUDA tensor raises: every one goes through `.cpu()` (a no-op on a CPU tensor)."""
    bad = [f"{p.relative_to(REPO)}:{i}" for p in CODE for i, line in enumerate(p.read_text().splitlines(), 1)
           if re.search(r"(?<!\.cpu\(\))\.numpy\(\)", line)]
    assert not bad, f".numpy() without .cpu(): {bad}"


FACTORIES = {"zeros", "ones", "empty", "eye", "arange", "full", "rand", "randn", "randint", "randperm",
             "linspace", "tensor"}
# (file, function): tensors made on the CPU on purpose, and moved where they are used
CPU_ON_PURPOSE = {
    ("scan/decoder.py", "__init__"),          # a parameter: moves with the module
    ("scan/masking.py", "_check_p"),          # P per sample: moved to G's device in positive_percentile
    ("scan/loss.py", "gaussian_kernel1d"), ("scan/loss.py", "blur_matrix"),   # moved to the images' device
}


def _factory_calls(path: Path):
    tree = ast.parse(path.read_text())
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "torch"
                    and node.func.attr in FACTORIES):
                yield fn.name, node


def test_tensor_creation_names_a_device():
    """In the explainers, metrics, SCAN and hooks, a new tensor names its device, or is a seeded CPU draw
    (generator=, the same numbers on every device, moved afterwards), or is listed above with its reason."""
    root = REPO / "src" / "scanbench"
    files = [*(root / "explainers").glob("*.py"), *(root / "metrics").glob("*.py"), *(root / "scan").glob("*.py"),
             root / "hooks.py", root / "sanity.py", root / "feature_extraction.py"]
    bad = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        for fn, call in _factory_calls(path):
            kws = {k.arg for k in call.keywords}
            if "device" in kws or "generator" in kws or (rel, fn) in CPU_ON_PURPOSE:
                continue
            bad.append(f"{rel}:{call.lineno} ({fn}: torch.{call.func.attr})")
    assert not bad, f"tensors created without device=: {bad}"


def test_threads_null_means_the_cores_this_process_may_use(tmp_path, monkeypatch):
    """Not os.cpu_count(): a container's CPU quota (cgroup cpu.max) and the affinity mask bound it."""
    from scanbench import compute

    quota = tmp_path / "cpu.max"
    monkeypatch.setattr(compute, "CGROUP_CPU_MAX", str(quota))
    monkeypatch.setattr(compute.os, "sched_getaffinity", lambda pid: set(range(8)))
    quota.write_text("max 100000\n")
    assert compute.available_cores() == 8
    quota.write_text("200000 100000\n")
    assert compute.available_cores() == 2
    quota.write_text("150000 100000\n")
    assert compute.available_cores() == 2          # 1.5 cores of quota: 2 threads
    monkeypatch.setattr(compute.os, "sched_getaffinity", lambda pid: {0})
    assert compute.available_cores() == 1
    assert compute.thread_count({"compute": {"device": "cpu", "threads": None, "nproc": 1}}) == 1
    assert compute.thread_count({"compute": {"device": "cpu", "threads": 3, "nproc": 1}}) == 3
