"""scanbench: a reproducible benchmark of visual explanations (SCAN and baselines)."""
import os as _os

# OpenMP threads that spin while waiting collapse when this 2-core machine is shared: a tiny ViT forward
# measured 217 ms with spinning threads beside another job vs 16 ms with passive waits (see docs/DECISIONS.md).
# Must be set before torch loads its OpenMP runtime, hence here, at the package's first import.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
