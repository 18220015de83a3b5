"""Shared plumbing for stage scripts: run main() and turn bad input into a one-line error."""
from __future__ import annotations

import sys
import time
from typing import Callable

from scanbench.errors import ScanbenchError


def run_stage(main: Callable[[], None]) -> None:
    start = time.perf_counter()
    try:
        main()
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(f"[{main.__module__}] done in {time.perf_counter() - start:.1f} s", file=sys.stderr)
