"""The command line every stage shares: its options, params, compute device, torchrun relaunch, errors, run facts.

    def main(argv=None):
        ap = stage_parser(__doc__, targets=True)    # --params, --manifest, --targets
        ap.add_argument("--backbone", required=True)
        args = ap.parse_args(argv)
        params = load_stage_params(args, data_parallel=True)   # compute.nproc > 1: re-run under torchrun, exit
        device = compute_device(params)             # compute.device and compute.threads
        ...
    if __name__ == "__main__":
        run_stage(main)                             # ScanbenchError -> "error: ..." on stderr, exit 2; run facts

One writer per output: `run_stage` first takes a lock beside each output the stage writes (`.<name>.lock` in its
folder, git- and DVC-ignored; the outputs are those dvc.yaml gives the stage whose command this is, plus the paths
of the --out/--out-dir/--maps-out/--report options), so a second process writing the same output refuses to start
with one line and exit 2; the locks go with the process (flock), so a dead one never blocks. The stage also ends
when its parent does (a killed `dvc repro`: scanbench.launch.end_with_parent).

Run facts (wall time, throughput, seconds per image) differ from run to run, so they never enter a DVC output:
they go to logs/run_facts.json, and the stage-time table to reports/stage_times.md (git-tracked, not hashed).
Nothing here imports torch at import time: a stage that loads no model (prepare, boxes, report) does not pay for it.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

from ..compute import resolve
from ..config import load_params
from ..errors import ScanbenchError
from ..io import expand_dvc_yaml, write_text
from ..launch import LOCK_HOLDER_ENV, end_with_parent, entry_argv, relaunch_under_torchrun, report_rank_error

RUN_FACTS = Path("logs/run_facts.json")
STAGE_TABLE = Path("reports/stage_times.md")
_facts: dict[str, Any] = {}
OUTPUT_OPTIONS = ("--out", "--out-dir", "--maps-out", "--report")   # the stages' options that name an output
_held_locks: list[int] = []   # open lock files: held until the process ends


def stage_parser(description: str | None, *, manifest: bool = True, targets: bool = False,
                 scan_models: bool = False) -> argparse.ArgumentParser:
    """The stage's parser (its docstring as the help) with the options stages share: --params; --manifest unless
    `manifest` is False; --targets (the target models' folder) and --scan-models (the SCAN decoders') on request."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", type=Path, default=Path("params.yaml"))
    if manifest:
        ap.add_argument("--manifest", type=Path, default=Path("data/manifest.csv"))
    if targets:
        ap.add_argument("--targets", type=Path, default=Path("models/targets"),
                        help="folder of <backbone>/model.{pt,onnx}")
    if scan_models:
        ap.add_argument("--scan-models", type=Path, default=Path("models/scan"),
                        help="folder of <backbone>/default/decoder.pt (the SCAN decoders)")
    return ap


def load_stage_params(args: argparse.Namespace, *, data_parallel: bool = False) -> dict:
    """The params file args.params names, checked (scanbench.config.load_params). A data-parallel stage with
    compute.nproc > 1, in a plain process, re-runs under torchrun here and exits with its workers' status."""
    params = load_params(args.params)
    if data_parallel:
        relaunch_under_torchrun(params)
    return params


def compute_device(params: dict):
    """The stage's torch.device from params `compute` (CUDA asked for without CUDA: a one-line error), with
    PyTorch's CPU threads set from compute.threads (scanbench.compute.resolve)."""
    return resolve(params)


def profile_results(params: dict) -> Path:
    """results/<profile>: the run's results tree (one per profile)."""
    return Path("results") / str(params.get("profile", "default"))


def stage_name() -> str:
    """The run's name in the run facts: the module, then its option values that are not paths (explain@b-gradcam)."""
    script = Path(sys.argv[0]).stem
    values = [a for a in sys.argv[1:] if not a.startswith("--") and "/" not in a]
    return "@".join([script, "-".join(values)]) if values else script


def log_fact(**facts: Any) -> None:
    """Record run facts of this stage run (logged at its end, beside its wall time)."""
    _facts.update(facts)


def record_run(name: str, seconds: float) -> None:
    runs = json.loads(RUN_FACTS.read_text()) if RUN_FACTS.exists() else {}
    runs[name] = {"seconds": round(seconds, 1), **_facts}
    write_text(RUN_FACTS, json.dumps(runs, indent=1, sort_keys=True) + "\n")
    rows = [f"| {n} | {r['seconds']:.1f} |" for n, r in sorted(runs.items())]
    total = sum(r["seconds"] for r in runs.values())
    write_text(STAGE_TABLE, "# Stage wall times of the last run in this checkout\n\n"
               "Seconds per stage run (`logs/run_facts.json`), written by each stage as it ends: a run fact, not a "
               "DVC output. Start-up (imports) is included; DVC's own bookkeeping is not.\n\n"
               "| stage | seconds |\n|---|---|\n" + "\n".join(rows) + f"\n| **total** | {total:.1f} |\n")


def report_error(err: ScanbenchError) -> None:
    """The one-line error on stderr; in a torchrun worker also handed to the launching process (scanbench.launch)."""
    print(f"error: {err}", file=sys.stderr)
    report_rank_error(str(err))


def stage_outputs(argv: list[str] | None = None, dvc_yaml: str | os.PathLike = "dvc.yaml",
                  params: str | os.PathLike = "params.yaml") -> list[Path]:
    """The outputs this stage run writes: those of the dvc.yaml stage whose command is this one (`python -m
    <module> <argv>`), and the values of its output options (OUTPUT_OPTIONS), each once."""
    argv = entry_argv() if argv is None else argv
    outs: list[str] = []
    for cmds, stage_outs in (expand_dvc_yaml(dvc_yaml, params) or {}).values():
        for cmd in cmds:
            try:
                words = shlex.split(cmd)
            except ValueError:
                continue
            if words[1:] == argv and Path(words[0]).name.startswith("python"):
                outs += stage_outs
    for i, arg in enumerate(argv):
        name, eq, value = arg.partition("=")
        if name in OUTPUT_OPTIONS:
            value = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            if value and not value.startswith("-"):
                outs.append(value)
    return [Path(p) for p in dict.fromkeys(os.path.normpath(o) for o in outs)]


def lock_path(output: str | os.PathLike) -> Path:
    """The lock file of an output: `.<name>.lock` beside it (ignored by git and DVC: .gitignore, .dvcignore)."""
    output = Path(output)
    return output.parent / f".{output.name}.lock"


def hold_outputs(outputs: list[Path]) -> None:
    """Take each output's lock (fcntl.flock, exclusive, non-blocking), writing this pid into it; held until this
    process ends. Another process holding one: ScanbenchError naming it and its pid. A no-op without fcntl."""
    try:
        import fcntl
    except ImportError:   # not POSIX
        return
    for output in outputs:
        path = lock_path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            if err.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            who = f"another process (pid {holder})" if holder.isdigit() else "another process"
            raise ScanbenchError(f"{who} is writing {output}: wait for it or kill it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _held_locks.append(fd)


def _terminated(signum: int, frame: Any) -> None:
    """SIGTERM (the parent died, or a kill): unwind, so that atomic writes delete their temp files."""
    raise SystemExit(128 + signum)


def start_stage() -> None:
    """What every stage process does first: end with its parent (SIGTERM, unwound as SystemExit), and hold the
    locks of its outputs, unless a launching process holds them for it (a torchrun worker it started), or
    it is a torchrun worker other than rank 0 (rank 0 holds them)."""
    end_with_parent()
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminated)
    if os.environ.get(LOCK_HOLDER_ENV) or os.environ.get("RANK", "0") != "0":
        return
    hold_outputs(stage_outputs())


def run_stage(main: Callable[[], Any]) -> None:
    """Run a stage's main(): first `start_stage` (end with the parent; one writer per output); bad input is one
    line and exit 2; at the end, the run's wall time and facts are logged (by rank 0 alone under torchrun)."""
    start = time.perf_counter()
    try:
        start_stage()
        main()
    except ScanbenchError as err:
        report_error(err)
        sys.exit(2)
    seconds = time.perf_counter() - start
    if os.environ.get("RANK", "0") != "0":   # a torchrun worker other than rank 0: rank 0 logs the run
        return
    record_run(stage_name(), seconds)
    print(f"[{stage_name()}] done in {seconds:.1f} s", file=sys.stderr)
