"""Explanation methods: one file per method, registered by name (see base.py)."""
from .base import ALL_METHODS, APPLIES, Explainer, make_explainer, methods_for, normalize_maps, register_explainer

__all__ = ["ALL_METHODS", "APPLIES", "Explainer", "make_explainer", "methods_for", "normalize_maps",
           "register_explainer"]
