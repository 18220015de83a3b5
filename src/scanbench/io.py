"""Atomic, deterministic output helpers: write to a temp file in the same folder, then rename; and the one way
stage outputs are read back (`reading`: a damaged file is one line naming it and the `dvc repro -f` that rebuilds it).

An interrupted stage therefore never leaves a half-written file that DVC could cache. Equal contents give
equal bytes (no temp name, clock or machine fact inside an archive), so DVC hashes depend on the data only.
"""
from __future__ import annotations

import contextlib
import io
import itertools
import json
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .errors import ScanbenchError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it onto `path`, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = suffix if suffix is not None else "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _to_builtin(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _to_builtin(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_to_builtin(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 1) == 0:
        return obj.item()
    return obj


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(_to_builtin(obj), indent=indent, sort_keys=False) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".npy") as tmp:
        np.save(tmp, array)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """torch.save through memory: saved to a file, the zip's folder name is that file's (random temp) stem."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    write_bytes(path, buf.getvalue())


# np.savez stamps each member with the current time; a fixed stamp keeps equal arrays equal in bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


def save_npz(path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray) -> None:
    """np.savez(_compressed) with fixed member timestamps; loads with np.load as usual."""
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", compression=method) as zf:
        for name, value in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_EPOCH)
            info.compress_type = method
            zf.writestr(info, member.getvalue())
    write_bytes(path, buf.getvalue())


_INTERPOLATION = re.compile(r"\$\{\s*([^}]+?)\s*\}")


def _lookup(context: dict, dotted: str) -> Any:
    value: Any = context
    for part in dotted.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def _to_str(value: Any) -> str:
    """A value as DVC writes it into a stage name or a string (booleans lower case)."""
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _resolve(value: Any, context: dict) -> Any:
    """DVC's `${...}` interpolation of a dvc.yaml value: a string that is one `${x}` becomes x's value, one that
    holds some becomes a string; lists and mappings are resolved item by item (KeyError: a name not in context)."""
    if isinstance(value, str):
        whole = _INTERPOLATION.fullmatch(value.strip())
        if whole:
            return _lookup(context, whole.group(1))
        return _INTERPOLATION.sub(lambda m: _to_str(_lookup(context, m.group(1))), value)
    if isinstance(value, list):
        return [_resolve(v, context) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, context) for k, v in value.items()}
    return value


def _composite(value: Any) -> bool:
    return isinstance(value, (list, dict))


def _out_paths(outs: Any, context: dict) -> list[str]:
    paths = []
    for out in outs or []:
        name = next(iter(out)) if isinstance(out, dict) else out
        try:
            paths.append(str(_resolve(name, context)))
        except (KeyError, IndexError, ValueError, TypeError):
            continue
    return paths


def dvc_stages(dvc_yaml: str | os.PathLike = "dvc.yaml", params: str | os.PathLike = "params.yaml"
               ) -> dict[str, list[str]] | None:
    """Every stage `dvc_yaml` defines, as DVC names them (`name`, `name@key` for a foreach over a list or mapping,
    `name@v1-v2` for a matrix), with its outputs' paths, interpolated from `params` and the file's own `vars`;
    None when the file is missing or cannot be expanded (then nothing here second-guesses dvc.lock)."""
    stages = expand_dvc_yaml(dvc_yaml, params)
    return None if stages is None else {name: outs for name, (_, outs) in stages.items()}


def expand_dvc_yaml(dvc_yaml: str | os.PathLike = "dvc.yaml", params: str | os.PathLike = "params.yaml"
                    ) -> dict[str, tuple[list[str], list[str]]] | None:
    """`dvc_stages`, with each stage's commands (interpolated) before its outputs: name -> (cmds, outs)."""
    import yaml

    try:
        spec = yaml.safe_load(Path(dvc_yaml).read_text()) or {}
        context = yaml.safe_load(Path(params).read_text()) if Path(params).is_file() else {}
    except (OSError, yaml.YAMLError):
        return None
    if not isinstance(spec, dict) or not isinstance(context, dict):
        return None
    for extra in spec.get("vars") or []:
        if isinstance(extra, dict):
            context = {**context, **extra}

    def entry(body: dict, local: dict) -> tuple[list[str], list[str]]:
        cmds = body.get("cmd") or []
        cmds = [cmds] if isinstance(cmds, str) else list(cmds)
        return [" ".join(str(_resolve(c, local)).split()) for c in cmds], _out_paths(body.get("outs"), local)

    stages: dict[str, tuple[list[str], list[str]]] = {}
    try:
        for name, stage in (spec.get("stages") or {}).items():
            stage = stage or {}
            if "foreach" in stage:
                items = _resolve(stage["foreach"], context)
                if isinstance(items, dict):
                    pairs = [(_to_str(k), v) for k, v in items.items()]
                elif any(_composite(v) for v in items):
                    pairs = [(str(i), v) for i, v in enumerate(items)]
                else:
                    pairs = [(_to_str(v), v) for v in items]
                for key, item in pairs:
                    stages[f"{name}@{key}"] = entry(stage.get("do") or {}, {**context, "item": item, "key": key})
            elif "matrix" in stage:
                matrix = {k: _resolve(v, context) for k, v in stage["matrix"].items()}
                for combination in itertools.product(*(list(enumerate(v)) for v in matrix.values())):
                    item = {k: v for k, (_, v) in zip(matrix, combination)}
                    key = "-".join(f"{k}{i}" if _composite(v) else str(v)   # DVC: True here, true in foreach
                                   for k, (i, v) in zip(matrix, combination))
                    stages[f"{name}@{key}"] = entry(stage, {**context, "item": item, "key": key})
            else:
                stages[str(name)] = entry(stage, context)
    except (KeyError, IndexError, ValueError, TypeError, AttributeError):
        return None
    return stages


def _holds(out: str, target: Path) -> bool:
    out_path = Path(os.path.normpath(out))
    return target == out_path or out_path in target.parents


def producing_stage(path: str | os.PathLike, lock: str | os.PathLike = "dvc.lock") -> str | None:
    """The DVC stage whose output holds `path`: one dvc.yaml defines (in the working directory, the repo root when
    a stage runs), by its outputs, else by dvc.lock's entries among those it defines; without a dvc.yaml, by
    dvc.lock alone. None when no stage lists it."""
    import yaml

    target = Path(os.path.normpath(os.path.relpath(path) if Path(path).is_absolute() else path))
    defined = dvc_stages(Path(lock).with_name("dvc.yaml"), Path(lock).with_name("params.yaml"))
    for name, outs in (defined or {}).items():
        if any(_holds(out, target) for out in outs):
            return name
    lock = Path(lock)
    if not lock.is_file():
        return None
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except (yaml.YAMLError, OSError, AttributeError):
        return None
    for name, stage in (stages.items() if isinstance(stages, dict) else ()):
        if defined is not None and name not in defined:
            continue   # a stage dvc.yaml no longer defines: `dvc repro -f` would not know it
        for out in (stage or {}).get("outs", []) or []:
            if _holds(str(out.get("path", "")), target):
                return name
    return None


def first_sentence(text: str) -> str:
    """One line that keeps the point of a library's message: its first sentence (of the first line that has
    text), whole; for PyTorch's weights-only refusal, the sentence after `WeightsUnpickler error:`, which names
    what was refused."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text))
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1]
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    sentence = re.split(r"(?<=[^.\s]{2})\.(?:\s|$)", line, maxsplit=1)[0]
    return " ".join(sentence.split()).rstrip(".")


@contextlib.contextmanager
def reading(path: str | os.PathLike, stage: str | None = None, fix: str | None = None) -> Iterator[None]:
    """Read a stage output inside this block: a damaged file (truncated, zero bytes, not the format) becomes one
    line naming the file, the library's first sentence, and what rebuilds it: `fix` if given, else `dvc repro -f
    <the stage that writes it>` (from dvc.yaml and dvc.lock, else `stage`)."""
    import pickle
    import zlib

    try:
        yield
    except ScanbenchError:   # a ValueError too: already one line
        raise
    except FileNotFoundError as err:
        raise ScanbenchError(f"{path} not found: {fix or _rebuild(path, stage, 'build')}") from err
    except (zipfile.BadZipFile, EOFError, pickle.UnpicklingError, zlib.error, RuntimeError, ValueError,
            OSError) as err:
        detail = first_sentence(str(err))
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            detail = "0 bytes"
        what = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        raise ScanbenchError(f"{path} is damaged or incomplete ({what}): "
                             f"{fix or _rebuild(path, stage, 'rebuild')}") from err


def _rebuild(path: str | os.PathLike, stage: str | None, verb: str) -> str:
    """`stage`: the exact stage name (with "@"), or the family (e.g. "train_scan") when the caller knows only that.
    The stage found by `producing_stage` wins; a name is given only where dvc.yaml defines it (when there is one):
    else the family's plain name, else `dvc repro`."""
    name = producing_stage(path)
    defined = dvc_stages() if name is None else None
    if name is None and stage and "@" in stage and (defined is None or stage in defined):
        name = stage
    if name:
        return f"{verb} it with `dvc repro -f {name}`"
    family = stage.split("@")[0] if stage else None
    if family and (defined is None or any(n.split("@")[0] == family for n in defined)):
        return f"{verb} it with `dvc repro -f <the {family} stage that writes it>` (`dvc stage list` names them)"
    return f"{verb} it by re-running the stage that writes it (`dvc stage list`, then `dvc repro -f <stage>`)"


def load_torch(path: str | os.PathLike, stage: str | None = None, map_location: Any = "cpu") -> Any:
    """A checkpoint written by save_torch (tensors and plain values only: weights_only=True), its tensors on
    `map_location` (a device: the stage's compute device)."""
    import torch

    with reading(path, stage):
        return torch.load(path, map_location=map_location, weights_only=True)


def load_npz(path: str | os.PathLike, stage: str | None = None) -> dict[str, np.ndarray]:
    """Every array of an .npz (save_npz), read now so that a truncated member fails here, not later."""
    with reading(path, stage):
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}


def load_npy(path: str | os.PathLike, stage: str | None = None, mmap_mode: str | None = None) -> np.ndarray:
    with reading(path, stage):
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)


def save_figure(path: str | os.PathLike, fig: Any, **kwargs: Any) -> None:
    with atomic_path(path, suffix=Path(path).suffix) as tmp:
        fig.savefig(tmp, **kwargs)
