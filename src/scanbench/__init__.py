"""scanbench: a reproducible benchmark of visual explanations (SCAN and baselines)."""

__version__ = "0.1.0"
