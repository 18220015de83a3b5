"""Stage check_params: refuse params.yaml before any compute when it holds a key no stage reads, or a name no
registry knows (backbones, layers, methods), or an unusable value.

    python -m scanbench.stages.check_params [--params params.yaml] [--out cache/params_checked]

DVC tracks the whole params file for this stage, so adding a key that no other stage lists (`dvc exp run -S
+alfa=8`) still runs one stage, and it fails with one line naming the key instead of an experiment that re-runs
nothing. The known keys are scanbench.config.PARAMS_SCHEMA; names and values are checked as the stages that use
them check them, all at once (scanbench.param_checks).

Its output, `--out`, is a marker of constant content that `prepare` depends on: every other stage is downstream of
prepare, so DVC runs this stage first (`dvc repro <any stage>` too) and a misspelt name (`-S
explain.baselines.cnn=[gradcm]`) is this stage's one line within seconds, before any model loads. Equal bytes on
every run: a params change re-runs this stage, and nothing downstream because of it.
"""
from __future__ import annotations

from pathlib import Path

from scanbench.config import read_params
from scanbench.io import write_text
from scanbench.param_checks import check_all_params
from scanbench.stages._cli import run_stage, stage_parser

MARKER = "params.yaml checked by the check_params stage: every key known, every name registered\n"


def main(argv: list[str] | None = None) -> None:
    ap = stage_parser(__doc__, manifest=False)
    ap.add_argument("--out", type=Path, default=Path("cache/params_checked"),
                    help="the marker file written when the params pass (prepare depends on it)")
    args = ap.parse_args(argv)
    params = read_params(args.params)          # refuses unknown keys, one line each
    keys = check_all_params(params)            # names (registries), values, methods and their settings
    write_text(args.out, MARKER)
    print(f"{args.params}: {len(keys)} keys, all known; every backbone, layer and method registered")


if __name__ == "__main__":
    run_stage(main)   # ScanbenchError -> "error: ..." on stderr, exit 2
