"""Stage check_params: refuse a params.yaml holding a key no stage reads (issue 14).

    python pipeline/check_params.py [--params params.yaml]

DVC tracks the whole params file for this stage, so adding a key that no other stage lists (`dvc exp run -S
+alfa=8`) still runs one stage, and it fails with one line naming the key instead of an experiment that re-runs
nothing. The known keys are scanbench.config.PARAMS_SCHEMA; the values are checked as every stage checks them
(config.validate_params). No output: nothing downstream depends on it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import run_stage  # noqa: E402

from scanbench.config import check_param_keys, load_params  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    args = ap.parse_args(argv)
    params = load_params(args.params)          # refuses unknown keys and bad values, one line each
    print(f"{args.params}: {len(check_param_keys(params))} keys, all known")


if __name__ == "__main__":
    run_stage(main)   # ScanbenchError -> "error: ..." on stderr, exit 2
