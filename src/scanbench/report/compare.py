"""Compare two metric trees (reports/metrics/*.json) for CI, in the spirit of `dvc metrics diff --md`.

Both trees are flattened to `file/key/key/...` paths. A numeric value passes when |current - reference| <=
its tolerance (absolute, in the metric's own units); any other value must be equal. A path present on one
side only fails. timing.json is left out: milliseconds depend on the machine.

Tolerances: the most specific matching pattern wins (fnmatch patterns on the flattened path; a pattern
matches its prefixes too, so `scan_training` covers every key below it). A reference folder states its own in
`reference.yaml` beside the metrics, with the machine it was made on and why each tolerance is what it is;
DEFAULT_TOLERANCES apply where it has none.
"""
from __future__ import annotations

import fnmatch
import json
import math
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from .. import ISA_PINS
from ..errors import ScanbenchError

EXCLUDED_FILES = ("timing",)
# Absolute tolerances in metric units. AUCs / Drop / Inc / Win / top-1 are percent: 0.5 pp is about the
# floating-point and thread-order noise of the smoke profile; counts must match exactly; decoder losses
# and confidence areas are fractions, so they get a fraction-sized tolerance.
DEFAULT_TOLERANCES: dict[str, float] = {
    "*": 0.5,
    "*_ci95": 0.5,           # [lo, hi] bootstrap intervals of AUC-D and its paired differences: AUC-type percents
    "*/n_images": 0.0,
    "*/n_val": 0.0,
    "scan_training/*/alpha": 0.0,
    "scan_training/*/final_loss": 0.02,
    "scan_training/*/n_train": 0.0,
    "scan_training/*/steps": 0.0,
    "scan_training/*/val_confidence_area": 0.02,
    "scan_training/*/target_area": 1e-6,
    "scan_training/*/val_recon_err": 0.02,
    "scan_training/*/val_mean_image_err": 0.02,
    "scan_training/*/val_recon_skill": 0.05,
    "scan_training/*/val_conf_image_std": 0.02,
    "scan_training/*/train_confidence_area": 0.02,
    "scan_training/*/train_recon_err": 0.02,
    "summary/scan_held_out_skill": 0.05,    # = scan_training/*/default/val_recon_skill
    "sanity_maps": 0.05,                   # map similarities (-1..1) after randomisation
    "grid": 0.05,                          # grid pointing game shares and pointing (0..1): a flipped maximum
}


def flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts/lists -> {path: leaf}. Lists of records with a backbone/layer use those as the key."""
    out: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}/{k}" if prefix else str(k)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}/{_list_key(v, i)}"))
    else:
        out[prefix] = obj
    return out


def _list_key(item: Any, i: int) -> str:
    if isinstance(item, Mapping) and "backbone" in item:
        return "/".join(str(item[k]) for k in ("backbone", "layer") if k in item)
    return str(i)


def load_tree(metrics_dir: str | Path, exclude: tuple[str, ...] = EXCLUDED_FILES) -> dict[str, Any]:
    d = Path(metrics_dir)
    if not d.is_dir():
        raise ScanbenchError(f"metrics folder {d} does not exist: run the report stage (or pass --reference / "
                             f"--current)")
    tree: dict[str, Any] = {}
    for p in sorted(d.glob("*.json")):
        if p.stem in exclude:
            continue
        try:
            tree[p.stem] = json.loads(p.read_text())
        except ValueError as err:
            raise ScanbenchError(f"{p} is not valid JSON ({err})") from err
    return flatten(tree)


def tolerance_for(path: str, tolerances: Mapping[str, float]) -> float:
    """The tolerance of the most specific pattern (fewest wildcards, then longest) matching path."""
    best: tuple[int, int, float] | None = None
    for pattern, tol in tolerances.items():
        if fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, pattern + "/*"):
            rank = (-pattern.count("*"), len(pattern), tol)
            if best is None or rank[:2] > best[:2]:
                best = rank
    if best is None:
        raise ScanbenchError(f"no tolerance matches {path}: add a '*' default")
    return best[2]


@dataclass
class Row:
    path: str
    reference: Any
    current: Any
    delta: float | None
    tolerance: float | None
    ok: bool
    status: str        # "same" | "within" | "drift" | "changed" | "missing" | "added"


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def compare_trees(reference: Mapping[str, Any], current: Mapping[str, Any],
                  tolerances: Mapping[str, float]) -> list[Row]:
    rows = []
    for path in sorted(set(reference) | set(current)):
        if path not in current:
            rows.append(Row(path, reference[path], None, None, None, False, "missing"))
            continue
        if path not in reference:
            rows.append(Row(path, None, current[path], None, None, False, "added"))
            continue
        ref, cur = reference[path], current[path]
        if _is_num(ref) and _is_num(cur):
            tol = tolerance_for(path, tolerances)
            if math.isnan(ref) or math.isnan(cur):
                same = math.isnan(ref) and math.isnan(cur)
                rows.append(Row(path, ref, cur, None, tol, same, "same" if same else "changed"))
                continue
            delta = float(cur) - float(ref)
            ok = abs(delta) <= tol + 1e-12
            rows.append(Row(path, ref, cur, delta, tol, ok, "same" if delta == 0 else ("within" if ok else "drift")))
        else:
            same = ref == cur
            rows.append(Row(path, ref, cur, None, None, same, "same" if same else "changed"))
    return rows


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def markdown_table(rows: list[Row], show_all: bool = False) -> str:
    shown = [r for r in rows if show_all or r.status != "same"]
    lines = ["| metric | reference | current | delta | tolerance | ok |", "|---|---|---|---|---|---|"]
    for r in shown:
        delta = f"{r.delta:+.4g}" if r.delta is not None else ("-" if r.status != "changed" else "changed")
        ok = "yes" if r.ok else f"**NO** ({r.status})"
        lines.append(f"| {r.path} | {_cell(r.reference)} | {_cell(r.current)} | {delta} | "
                     f"{_cell(r.tolerance)} | {ok} |")
    n_bad = sum(not r.ok for r in rows)
    n_changed = sum(r.status != "same" for r in rows)
    summary = (f"{len(rows)} metrics compared, {n_changed} changed, {n_bad} beyond tolerance or missing/added "
               f"(timing excluded).")
    if not shown:
        return f"No differences.\n\n{summary}"
    return "\n".join(lines) + f"\n\n{summary}"


REFERENCE_FILE = "reference.yaml"


def read_reference_file(reference_dir: str | Path) -> dict[str, Any]:
    """reference.yaml of a reference folder ({} when absent): machine facts and tolerances."""
    import yaml

    path = Path(reference_dir) / REFERENCE_FILE
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ScanbenchError(f"{path} is not valid YAML ({err})") from err
    tols = data.get("tolerances", {})
    if not isinstance(tols, Mapping) or not all(_is_num(v) and v >= 0 for v in tols.values()):
        raise ScanbenchError(f"{path}: tolerances must map patterns to numbers >= 0")
    return data


def update_reference(reference: Path, current: Path) -> None:
    """Replace the reference's metric files by the current ones; refresh the machine facts, keep the rest."""
    import yaml

    from ..io import write_bytes, write_text

    if not current.is_dir():
        raise ScanbenchError(f"metrics folder {current} does not exist: run the pipeline first")
    meta = read_reference_file(reference)
    reference.mkdir(parents=True, exist_ok=True)
    for old in reference.glob("*.json"):
        old.unlink()
    for new in sorted(current.glob("*.json")):
        write_bytes(reference / new.name, new.read_bytes())
    meta["machine"] = machine_facts()
    header = "# The machine and settings this reference was made with, and the tolerances CI allows against it.\n"
    write_text(reference / REFERENCE_FILE, header + yaml.safe_dump(meta, sort_keys=False, width=110))


def machine_facts() -> dict[str, Any]:
    """What a metric's last bits can depend on: CPU, its vector extensions, the ISA pins, library versions."""
    from importlib.metadata import PackageNotFoundError, version

    cpu, flags = platform.machine(), []
    try:
        with open("/proc/cpuinfo") as fh:
            text = fh.read()
        cpu = next((ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("model name")), cpu)
        line = next((ln for ln in text.splitlines() if ln.startswith("flags")), "")
        flags = sorted(f for f in line.split(":", 1)[-1].split() if f.startswith(("avx", "fma", "amx", "sse4")))
    except OSError:
        pass
    versions = {}
    for pkg in ("torch", "onnxruntime", "numpy", "timm", "grad-cam", "scikit-image"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    pins = {k: os.environ.get(k) for k in ISA_PINS}
    return {"cpu": cpu, "cores": os.cpu_count(), "isa_flags": flags, "isa_pins": pins,
            "python": platform.python_version(), "versions": versions}


def parse_tolerances(items: list[str], default: float | None = None,
                     base: Mapping[str, float] | None = None) -> dict[str, float]:
    """`base` (DEFAULT_TOLERANCES, or a reference's own) updated by --abs-tol (the '*' default) and
    --tol PATTERN=VALUE overrides."""
    tols = {**DEFAULT_TOLERANCES, **(base or {})}
    if default is not None:
        tols["*"] = float(default)
    for item in items:
        pattern, sep, value = item.partition("=")
        try:
            tols[pattern.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not pattern.strip() or tols[pattern.strip()] < 0:
            raise ScanbenchError(f"--tol expects PATTERN=VALUE with VALUE >= 0 (got {item!r}), e.g. "
                                 f"--tol 'explanations/*/methods/lime=2'")
    return tols


def compare_dirs(reference_dir: str | Path, current_dir: str | Path,
                 tolerances: Mapping[str, float] | None = None) -> list[Row]:
    return compare_trees(load_tree(reference_dir), load_tree(current_dir), tolerances or DEFAULT_TOLERANCES)
