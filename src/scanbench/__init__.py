"""scanbench: a reproducible benchmark of visual explanations (SCAN and baselines)."""
import os as _os

# Both settings below must be in the environment before torch (or its OpenMP / oneDNN / MKL) loads, hence here,
# at the package's first import: every stage script imports scanbench before torch.

# OpenMP threads that spin while waiting collapse when this 2-core machine is shared: a tiny ViT forward
# measured 217 ms with spinning threads beside another job vs 16 ms with passive waits (see docs/DECISIONS.md).
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Same results on any x86 CPU: PyTorch's own kernels, oneDNN and MKL pick code paths by instruction set, and an
# AVX-512 path sums in another order than an AVX2 one; training amplifies that last bit into different SCAN
# maps (31 smoke metrics moved between an AVX2 and an AVX-512 machine). Pinned to AVX2, an AVX-512 machine
# reproduced the AVX2 machine's reference (docs/DECISIONS.md). SCANBENCH_NATIVE_ISA=1 lifts the pins (faster
# on some CPUs; results then match only runs on the same kind of CPU). Values already set are kept.
# MKL also picks its code path by CPU vendor: capped at AVX2, an Intel Xeon still summed differently from an AMD
# EPYC (a smoke decoder's final loss 0.746233 vs 0.746223); MKL's conditional numerical reproducibility in strict
# mode (MKL_CBWR) takes the same path on both (0.746223 on the Xeon too).
ISA_PINS = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
            "MKL_CBWR": "AVX2,STRICT"}
if _os.environ.get("SCANBENCH_NATIVE_ISA", "") not in ("1", "true", "yes"):
    for _k, _v in ISA_PINS.items():
        _os.environ.setdefault(_k, _v)

__version__ = "0.1.0"
