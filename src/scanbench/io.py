"""Atomic, deterministic output helpers: write to a temp file in the same folder, then rename; and the one way
stage outputs are read back (`reading`: a damaged file is one line naming it and the `dvc repro -f` that rebuilds it).

An interrupted stage therefore never leaves a half-written file that DVC could cache. Equal contents give
equal bytes (no temp name, clock or machine fact inside an archive), so DVC hashes depend on the data only.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
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


def producing_stage(path: str | os.PathLike, lock: str | os.PathLike = "dvc.lock") -> str | None:
    """The DVC stage whose output holds `path`, by dvc.lock in the working directory (the repo root when a stage
    runs); None when there is no lock or no stage lists it."""
    import yaml

    lock = Path(lock)
    if not lock.is_file():
        return None
    try:
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
    except (yaml.YAMLError, OSError, AttributeError):
        return None
    target = Path(os.path.normpath(os.path.relpath(path) if Path(path).is_absolute() else path))
    for name, stage in (stages.items() if isinstance(stages, dict) else ()):
        for out in (stage or {}).get("outs", []) or []:
            out_path = Path(os.path.normpath(str(out.get("path", ""))))
            if target == out_path or out_path in target.parents:
                return name
    return None


@contextlib.contextmanager
def reading(path: str | os.PathLike, stage: str | None = None, fix: str | None = None) -> Iterator[None]:
    """Read a stage output inside this block: a damaged file (truncated, zero bytes, not the format) becomes one
    line naming the file and what rebuilds it: `fix` if given, else `dvc repro -f <the stage that writes it>`
    (from dvc.lock, else `stage`)."""
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
        detail = (str(err).strip().splitlines() or [""])[0][:160]
        if Path(path).is_file() and Path(path).stat().st_size == 0:
            detail = "0 bytes"
        what = f"{type(err).__name__}: {detail}" if detail else type(err).__name__
        raise ScanbenchError(f"{path} is damaged or incomplete ({what}): "
                             f"{fix or _rebuild(path, stage, 'rebuild')}") from err


def _rebuild(path: str | os.PathLike, stage: str | None, verb: str) -> str:
    """`stage`: the exact stage name (with "@"), or the family (e.g. "train_scan") when the caller knows only that;
    the name in dvc.lock wins."""
    name = producing_stage(path) or (stage if stage and "@" in stage else None)
    if name:
        return f"{verb} it with `dvc repro -f {name}`"
    if stage:
        return f"{verb} it with `dvc repro -f <the {stage} stage that writes it>` (`dvc stage list` names them)"
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
