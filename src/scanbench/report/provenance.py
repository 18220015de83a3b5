"""What each results file was made from, as `dvc.lock` records it, checked against the run the report renders.

DVC records, for every stage it ran, the params it read (their values), the md5 of every input file and of every
output. The report reads files written by many stages; before it renders one page from them it checks, per file,
the lock entry of the stage that wrote it:

- the params that stage read have the values now in the params file (a profile switch, `-S key=value`, another
  data root: `data.root`);
- its input files are those now in the workspace (the manifest, hence the data root and splits; the boxes; a
  target's JSON), compared by md5;
- the file itself is the output the lock records (not written since by hand, or by a stage run outside DVC).

The first mismatch is one line naming the file and the stage to re-run. A file no lock entry writes (a results
folder made outside DVC, as in tests) is not checked. Directories are compared through their files' stages only:
DVC's directory hash is its own format.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ..errors import ScanbenchError

MISSING = object()
# DVC writes the lock in YAML 1.2, where `1e-06` is a float; PyYAML (YAML 1.1) reads it as a string
_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _canon(value: Any) -> Any:
    """A param value as both YAML readings agree on it: numeric strings as floats, recursively."""
    if isinstance(value, str) and _FLOAT.fullmatch(value):
        return float(value)
    if isinstance(value, Mapping):
        return {k: _canon(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canon(v) for v in value]
    return value


def _md5(path: Path, cache: dict[Path, str]) -> str:
    if path not in cache:
        digest = hashlib.md5()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        cache[path] = digest.hexdigest()
    return cache[path]


def _lookup(params: Mapping[str, Any], dotted: str) -> Any:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return MISSING
        node = node[part]
    return node


def _writers(lock: Mapping[str, Any]) -> dict[str, tuple[str, Mapping[str, Any]]]:
    """Output path (POSIX, relative to the repo root) -> (stage name, its lock entry)."""
    out = {}
    for name, entry in (lock.get("stages") or {}).items():
        for o in entry.get("outs") or []:
            out[str(PurePosixPath(o["path"]))] = (name, entry)
    return out


def _writer_of(rel: PurePosixPath, writers: Mapping[str, tuple[str, Mapping[str, Any]]]):
    """The stage whose output is `rel` or a folder above it, with that output's path; None if no stage's."""
    for candidate in (rel, *rel.parents):
        key = str(candidate)
        if key in writers:
            return key, *writers[key]
    return None


def _show(value: Any) -> str:
    return "(absent)" if value is MISSING else repr(value)


def check_provenance(files: Iterable[str | Path], root: str | Path = ".", lock_file: str = "dvc.lock") -> int:
    """Check each of `files` (paths relative to `root`, the repo root) against the lock entry of the stage that
    wrote it (see the module's docstring); raise ScanbenchError naming the first stale file and its stage.
    Returns how many files were checked (0 without a lock)."""
    root = Path(root)
    lock_path = root / lock_file
    if not lock_path.exists():
        return 0
    try:
        lock = yaml.safe_load(lock_path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ScanbenchError(f"{lock_path} is not valid YAML ({str(err).splitlines()[0]}); restore it with "
                             f"`git checkout {lock_file}`") from err
    writers = _writers(lock)
    md5s: dict[Path, str] = {}
    params_files: dict[str, Any] = {}
    checked_stages: set[str] = set()
    n = 0
    for f in files:
        rel = PurePosixPath(Path(f).as_posix())
        found = _writer_of(rel, writers)
        if found is None:
            continue
        out_path, stage, entry = found
        n += 1
        hint = f"re-run it: dvc repro {stage}"
        if out_path == str(rel) and (root / rel).is_file():
            recorded = next(o for o in entry["outs"] if str(PurePosixPath(o["path"])) == out_path).get("md5")
            if recorded and not recorded.endswith(".dir") and _md5(root / rel, md5s) != recorded:
                raise ScanbenchError(f"{rel} is not the file `{stage}` wrote as dvc.lock records it (written since "
                                     f"outside DVC?): {hint}")
        if stage in checked_stages:
            continue
        checked_stages.add(stage)
        for pfile, values in (entry.get("params") or {}).items():
            if pfile not in params_files:
                ppath = root / pfile
                params_files[pfile] = yaml.safe_load(ppath.read_text()) if ppath.exists() else {}
            for key, old in (values or {}).items():
                new = _lookup(params_files[pfile] or {}, key)
                if new is MISSING or _canon(new) != _canon(old):
                    raise ScanbenchError(f"{rel} was made by `{stage}` with {key} = {_show(old)}, but {pfile} now "
                                         f"has {_show(new)}: {hint}")
        for dep in entry.get("deps") or []:
            path, recorded = root / dep["path"], dep.get("md5")
            if not recorded or recorded.endswith(".dir") or not path.is_file():
                continue
            if _md5(path, md5s) != recorded:
                raise ScanbenchError(f"{rel} was made by `{stage}` from a {dep['path']} that has changed since "
                                     f"(other data, settings or code): {hint}")
    return n
