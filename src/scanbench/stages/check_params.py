"""Stage check_params: refuse a params.yaml holding a key no stage reads.

    python -m scanbench.stages.check_params [--params params.yaml]

DVC tracks the whole params file for this stage, so adding a key that no other stage lists (`dvc exp run -S
+alfa=8`) still runs one stage, and it fails with one line naming the key instead of an experiment that re-runs
nothing. The known keys are scanbench.config.PARAMS_SCHEMA; the values are checked as every stage checks them
(config.validate_params). No output: nothing downstream depends on it.
"""
from __future__ import annotations

from scanbench.config import check_param_keys
from scanbench.explainers.base import validate_method_params
from scanbench.stages._cli import load_stage_params, run_stage, stage_parser


def main(argv: list[str] | None = None) -> None:
    args = stage_parser(__doc__, manifest=False).parse_args(argv)
    params = load_stage_params(args)          # refuses unknown keys and bad values, one line each
    validate_method_params(params)             # the methods run, and each one's settings (explain.<method>)
    print(f"{args.params}: {len(check_param_keys(params))} keys, all known")


if __name__ == "__main__":
    run_stage(main)   # ScanbenchError -> "error: ..." on stderr, exit 2
