"""Explanation methods: one file per method, registered by name with its declaration (see base.py)."""
from .base import (
                   Explainer,
                   MethodSettings,
                   family_methods,
                   make_explainer,
                   methods_for,
                   normalize_maps,
                   register_explainer,
                   registered_methods,
)

__all__ = ["Explainer", "MethodSettings", "family_methods", "make_explainer", "methods_for", "normalize_maps",
           "register_explainer", "registered_methods"]
