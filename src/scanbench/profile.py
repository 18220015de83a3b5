"""Switch the active profile: copies profiles/<name>.yaml onto params.yaml.

    python -m scanbench.profile smoke
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

from .errors import ScanbenchError

PROFILES = ("smoke", "default", "paper")


def use_profile(name: str, repo: Path = Path(".")) -> Path:
    if name not in PROFILES:
        raise ScanbenchError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    src = repo / "profiles" / f"{name}.yaml"
    dst = repo / "params.yaml"
    tmp = dst.with_suffix(".yaml.tmp")
    shutil.copyfile(src, tmp)
    tmp.replace(dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print(f"usage: python -m scanbench.profile <{'|'.join(PROFILES)}>", file=sys.stderr)
        return 2
    try:
        dst = use_profile(argv[0])
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"params.yaml now holds the {argv[0]} profile ({dst})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
