"""Every DVC stage's deps cover the project code its module runs.

For each stage in dvc.yaml the module its `cmd` runs (`python -m scanbench.stages.<stage>`) is parsed (ast), with
its packages' `__init__.py` (Python runs them first), and every project module it imports is followed
transitively: `scanbench.*` under src/, relative imports, the packages' `__init__.py` on the way, and imports
inside functions too (lazy imports are still code the stage may run).
A module that loads its package's modules by name (pkgutil) pulls in the whole package. The test fails naming the
stage and each file its deps miss, so a change to e.g. `hooks.py` re-runs exactly the stages that import it.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
STAGE_CMD = re.compile(r"python\s+-m\s+(scanbench\.stages\.\w+)")
# Data files the library reads at run time (package data): code in all but name.
PACKAGE_DATA = {"src/scanbench/report/tables.py": ["src/scanbench/report/paper_values.yaml"]}


def _module_file(dotted: str) -> Path | None:
    parts = dotted.split(".")
    if parts[0] != "scanbench":
        return None
    base = SRC.joinpath(*parts)
    if base.with_suffix(".py").exists():
        return base.with_suffix(".py")
    if (base / "__init__.py").exists():
        return base / "__init__.py"
    return None


def _package_of(path: Path) -> str | None:
    try:
        rel = path.relative_to(SRC)
    except ValueError:
        return None
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1]) if parts[-1] != "__init__" else ".".join(parts[:-1])


def _imports(path: Path) -> set[Path]:
    """Project files `path` imports directly (plus the __init__.py of every package on the way)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path)
    if path.name == "__init__.py" and package is not None:
        package = package  # an __init__ is its package
    names: set[str] = set()
    dynamic = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                names.add(alias.name)
                dynamic |= alias.name == "pkgutil"
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if package is None:
                    continue
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names.add(mod)
            for alias in node.names:       # `from pkg import submodule`
                names.add(f"{mod}.{alias.name}")
    found: set[Path] = set()
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):   # parents' __init__ run first
            f = _module_file(".".join(parts[:i]))
            if f is not None:
                found.add(f)
    if dynamic and package:
        found.update(SRC.joinpath(*package.split(".")).glob("*.py"))
    return found


def _with_packages(module: str) -> list[Path]:
    """The files `python -m module` runs first: each package's __init__.py on the way, then the module's own."""
    parts = module.split(".")
    files = [_module_file(".".join(parts[:i])) for i in range(1, len(parts) + 1)]
    return [f for f in files if f is not None]


def import_closure(module: str) -> set[Path]:
    seen: set[Path] = set()
    todo = _with_packages(module)
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        todo.extend(_imports(f) - seen)
    out = set(seen)
    for f in seen:
        out.update(ROOT / p for p in PACKAGE_DATA.get(str(f.relative_to(ROOT)), []))
    return out


def _stages() -> list[tuple[str, str, list[str]]]:
    """(stage, module, deps) per stage definition; foreach/matrix templates are checked once (same cmd/deps)."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    out = []
    for name, stage in spec["stages"].items():
        body = stage.get("do", stage)
        module = STAGE_CMD.match(body["cmd"])
        assert module, f"stage {name}: cmd does not run `python -m scanbench.stages.<stage>`"
        deps = [d for d in body.get("deps", []) if "${" not in d.split("/")[0]]
        out.append((name, module.group(1), deps))
    return out


def _covered(path: Path, deps: list[str]) -> bool:
    rel = path.relative_to(ROOT).as_posix()
    return any(rel == d.rstrip("/") or rel.startswith(d.rstrip("/") + "/") for d in deps)


@pytest.mark.parametrize("stage,module,deps", _stages(), ids=[s[0] for s in _stages()])
def test_stage_deps_cover_imported_code(stage, module, deps):
    closure = import_closure(module)
    missing = sorted(p.relative_to(ROOT).as_posix() for p in closure if not _covered(p, deps))
    assert not missing, f"stage {stage}: deps miss {', '.join(missing)}"


@pytest.mark.parametrize("stage,module,deps", _stages(), ids=[s[0] for s in _stages()])
def test_stage_deps_name_no_code_the_stage_does_not_run(stage, module, deps):
    """The other direction: a code dep (file, or every file of a folder dep) is imported by the stage, so a change
    to code a stage does not run does not re-run it."""
    closure = {p.relative_to(ROOT).as_posix() for p in import_closure(module)}
    extra = []
    for d in deps:
        if not d.startswith("src/"):
            continue
        path = ROOT / d
        files = [f.relative_to(ROOT).as_posix() for f in sorted(path.rglob("*.py"))] if path.is_dir() else [d]
        extra += [f for f in files if f not in closure]
    assert not extra, f"stage {stage}: deps name code its module never imports: {', '.join(extra)}"


def test_closure_follows_lazy_relative_and_dynamic_imports(tmp_path):
    """The closure itself: lazy imports inside functions and the pkgutil loader are followed."""
    closure = {p.relative_to(ROOT).as_posix() for p in import_closure("scanbench.stages.explain")}
    assert "src/scanbench/hooks.py" in closure          # via explainers -> _attention / _cam
    assert "src/scanbench/explainers/rise.py" in closure  # loaded by name (pkgutil)
    assert "src/scanbench/__init__.py" in closure and "src/scanbench/stages/__init__.py" in closure
    assert "src/scanbench/distributed.py" in closure    # lazily, from the shared command line (_cli)
    assert not any(p.startswith("src/scanbench/report/") for p in closure)


def test_deps_name_existing_paths():
    for stage, _, deps in _stages():
        for d in deps:
            if "${" in d:
                continue
            assert (ROOT / d).exists() or d.split("/")[0] in {"data", "cache", "models", "features", "maps",
                                                               "results"}, f"stage {stage}: dep {d} does not exist"
