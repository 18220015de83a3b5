"""How a stage process starts: with params `compute.nproc` > 1, a data-parallel stage re-runs itself under torchrun,
and a worker's bad-input error is handed back to the launching process; every stage process, torchrun and its
workers included, ends when its parent does (`end_with_parent`: `dvc repro` killed, even with kill -9, takes its
stage with it). No torch here: every stage's command line (scanbench.stages._cli) imports this, including the
stages that load no model.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .config import compute_params
from .errors import ScanbenchError

TORCHRUN_ARGS_ENV = "SCANBENCH_TORCHRUN_ARGS"
ERROR_FILE_ENV = "SCANBENCH_RANK_ERROR_FILE"   # a worker's one-line bad-input error, read back by the launcher
LOCK_HOLDER_ENV = "SCANBENCH_OUTPUT_LOCK_HOLDER"   # pid of the launching process, which holds the output locks
PR_SET_PDEATHSIG = 1   # linux/prctl.h


def end_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Have the kernel send this process `sig` when its parent dies (Linux prctl PR_SET_PDEATHSIG; it survives
    exec, so a child set up with this in preexec_fn keeps it). True when set; a no-op (False) elsewhere. If the
    parent is already gone (adopted by init), the signal is sent now."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() == 1:   # the parent died before the call: nobody will signal
        os.kill(os.getpid(), sig)
    return True


def _child_ends_with_parent() -> None:   # preexec_fn: runs in the child between fork and exec
    end_with_parent()


def under_torchrun() -> bool:
    """True in a process torchrun started (it sets WORLD_SIZE, RANK, LOCAL_RANK, LOCAL_WORLD_SIZE)."""
    return "WORLD_SIZE" in os.environ and "LOCAL_RANK" in os.environ


def torchrun_command(nproc: int, entry_argv: list[str], extra: str | None = None) -> list[str]:
    """`python -m torch.distributed.run --nproc-per-node N <rendezvous flags> <entry> args...` (no PATH lookup);
    `entry_argv` is a script and its arguments, or `-m module` and its arguments (see `entry_argv`)."""
    flags = shlex.split(extra if extra is not None else os.environ.get(TORCHRUN_ARGS_ENV, ""))
    if not any(f.split("=")[0] in ("--nnodes", "--rdzv-endpoint", "--rdzv_endpoint", "--master-addr",
                                   "--master_addr", "--standalone") for f in flags):
        flags = ["--standalone", *flags]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), *flags, *entry_argv]


def entry_argv() -> list[str]:
    """This process's command line as torchrun re-runs it: `-m <module> args...` for `python -m <module>` (a stage:
    `python -m scanbench.stages.<stage>`; torchrun's --module flag), else the script and its arguments."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and spec.name:
        module = spec.name[:-len(".__main__")] if spec.name.endswith(".__main__") else spec.name
        return ["-m", module, *sys.argv[1:]]
    return list(sys.argv)


def relaunch_under_torchrun(params: dict[str, Any]) -> None:
    """With compute.nproc > 1 in a plain process: run this stage (its command line, `entry_argv`) under torchrun and
    exit with its status; a worker's bad-input error comes back as that one line and exit 2. A no-op for nproc 1
    (the single-process path is untouched) and inside a torchrun worker."""
    nproc = compute_params(params)["nproc"]
    if nproc == 1 or under_torchrun():
        return
    with tempfile.TemporaryDirectory(prefix="scanbench-ranks-") as tmp:
        err_file = Path(tmp) / "error.txt"
        rc = subprocess.call(torchrun_command(nproc, entry_argv()),   # ends with this process (so its workers)
                             env={**os.environ, ERROR_FILE_ENV: str(err_file), LOCK_HOLDER_ENV: str(os.getpid())},
                             preexec_fn=_child_ends_with_parent)
        if rc != 0 and err_file.exists():
            raise ScanbenchError(err_file.read_text().strip())
    raise SystemExit(rc)


def report_rank_error(message: str) -> None:
    """In a torchrun worker, leave the one-line error for the launcher (the first rank to fail wins)."""
    path = os.environ.get(ERROR_FILE_ENV)
    if path and not os.path.exists(path):
        try:
            with open(path, "x") as fh:
                fh.write(message)
        except OSError:
            pass
