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
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from ..errors import ScanbenchError
from ..io import _holds as output_holds
from ..io import _lookup

MISSING = object()


def _read_yaml(path: Path) -> Any:
    """A YAML file as DVC reads and writes it: YAML 1.2 (`1e-06` a float, `yes` a string; PyYAML, YAML 1.1, reads
    the first as a string and the second as True), through ruamel.yaml's loader, DVC's own."""
    from ruamel.yaml import YAML

    return YAML(typ="safe").load(path.read_text())


def _md5(path: Path, cache: dict[Path, str]) -> str:
    if path not in cache:
        digest = hashlib.md5()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        cache[path] = digest.hexdigest()
    return cache[path]


def _param(params: Any, dotted: str) -> Any:
    try:
        return _lookup(params, dotted)
    except (KeyError, IndexError, TypeError, ValueError):
        return MISSING


def _show(value: Any) -> str:
    return "(absent)" if value is MISSING else repr(value)


def check_provenance(files: Iterable[str | Path], root: str | Path = ".", lock_file: str = "dvc.lock") -> int:
    """Check each of `files` (paths relative to `root`, the repo root) against the lock entry of the stage that
    wrote it (see the module's docstring); raise ScanbenchError naming the first stale file and its stage.
    Returns how many files were checked (0 without a lock)."""
    from ruamel.yaml import YAMLError

    root = Path(root)
    lock_path = root / lock_file
    if not lock_path.exists():
        return 0
    try:
        stages = (_read_yaml(lock_path) or {}).get("stages") or {}
    except YAMLError as err:
        raise ScanbenchError(f"{lock_path} is not valid YAML ({str(err).splitlines()[0]}); restore it with "
                             f"`git checkout {lock_file}`") from err
    outs = [(name, entry, out) for name, entry in stages.items() for out in entry.get("outs") or []]
    md5s: dict[Path, str] = {}
    params_files: dict[str, Any] = {}
    checked_stages: set[str] = set()
    n = 0
    for f in files:
        rel = Path(os.path.normpath(f))
        found = next(((name, entry, out) for name, entry, out in outs if output_holds(out["path"], rel)), None)
        if found is None:
            continue
        stage, entry, out = found
        n += 1
        hint = f"re-run it: dvc repro {stage}"
        recorded = out.get("md5") or ""
        if Path(os.path.normpath(out["path"])) == rel and not recorded.endswith(".dir") and recorded \
                and (root / rel).is_file() and _md5(root / rel, md5s) != recorded:
            raise ScanbenchError(f"{rel.as_posix()} is not the file `{stage}` wrote as dvc.lock records it (written "
                                 f"since outside DVC?): {hint}")
        if stage in checked_stages:
            continue
        checked_stages.add(stage)
        for pfile, values in (entry.get("params") or {}).items():
            if pfile not in params_files:
                ppath = root / pfile
                params_files[pfile] = (_read_yaml(ppath) if ppath.exists() else None) or {}
            for key, old in (values or {}).items():
                new = _param(params_files[pfile], key)
                if new != old:
                    raise ScanbenchError(f"{rel.as_posix()} was made by `{stage}` with {key} = {_show(old)}, but "
                                         f"{pfile} now has {_show(new)}: {hint}")
        for dep in entry.get("deps") or []:
            path, recorded = root / dep["path"], dep.get("md5")
            if not recorded or recorded.endswith(".dir") or not path.is_file():
                continue
            if _md5(path, md5s) != recorded:
                raise ScanbenchError(f"{rel.as_posix()} was made by `{stage}` from a {dep['path']} that has changed "
                                     f"since (other data, settings or code): {hint}")
    return n
