"""One writer per output: a stage refuses to start while another process holds its output's lock (one line,
exit 2), a dead holder never blocks, and a stage process ends when its parent is killed (kill -9 included)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from scanbench.stages._cli import lock_path, stage_outputs

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO / "src")}
LINUX = sys.platform.startswith("linux")

HOLDER = """
import sys
from pathlib import Path
from scanbench.stages._cli import hold_outputs
hold_outputs([Path(sys.argv[1])])
print("held", flush=True)
sys.stdin.read()          # until the test closes stdin
"""


def test_stage_outputs_from_dvc_yaml_and_output_options(monkeypatch):
    monkeypatch.chdir(REPO)
    argv = ["-m", "scanbench.stages.explain", "--backbone", "b", "--method", "m", "--out", "maps/b/m.npz"]
    assert stage_outputs(argv) == [Path("maps/b/m.npz")]             # no dvc.yaml stage: the option's value
    assert stage_outputs(["-m", "scanbench.stages.check_params", "--out", "cache/params_checked"]) == [
        Path("cache/params_checked")]
    assert stage_outputs(["-m", "scanbench.stages.timing", "--out-dir=reports/timing"]) == [Path("reports/timing")]
    assert lock_path("models/targets/x") == Path("models/targets/.x.lock")
    assert stage_outputs(["-m", "scanbench.stages.explain", "--manifest", "data/manifest.csv"]) == []   # an input


def test_lock_files_are_ignored_by_git_and_dvc():
    for name in (".gitignore", ".dvcignore"):
        assert ".*.lock" in (REPO / name).read_text().split(), name


@pytest.mark.skipif(os.name != "posix", reason="fcntl locks")
def test_a_second_writer_of_the_same_output_refuses(tmp_path):
    (tmp_path / "params.yaml").write_text((REPO / "profiles" / "smoke.yaml").read_text())
    out = "cache/params_checked"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, out], cwd=tmp_path, env=ENV, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        cmd = [sys.executable, "-m", "scanbench.stages.check_params", "--out", out]
        res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
        assert res.returncode == 2, res.stderr
        assert res.stderr == (f"error: another process (pid {holder.pid}) is writing {out}: "
                              f"wait for it or kill it\n")
        assert not (tmp_path / out).exists()
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert (tmp_path / "cache" / ".params_checked.lock").read_text().strip() == str(holder.pid)   # left behind
    res = subprocess.run(cmd, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr                 # the dead holder's lock file does not block
    assert (tmp_path / out).is_file()


CHILD = """
import time
from scanbench.stages._cli import run_stage
def main():
    print("child", __import__("os").getpid(), flush=True)
    time.sleep(120)
run_stage(main)
"""
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]])
time.sleep(120)
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")   # a zombie has ended: only its exit status is left to collect


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
def test_a_stage_ends_when_its_parent_is_killed(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, CHILD], cwd=tmp_path, env=ENV,
                              stdout=subprocess.PIPE, text=True)
    try:
        line = parent.stdout.readline().split()
        assert line[0] == "child", line
        child = int(line[1])
        assert _alive(child)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 20
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(child), "the stage outlived its killed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


@pytest.mark.skipif(not LINUX, reason="PR_SET_PDEATHSIG is Linux's")
def test_the_torchrun_launch_passes_the_parent_death_signal_on():
    """launch.relaunch_under_torchrun starts torchrun with preexec_fn=_child_ends_with_parent: the setting
    survives exec, so torchrun (and through it, its workers) ends with the stage."""
    from scanbench.launch import _child_ends_with_parent

    probe = ("import ctypes, ctypes.util; libc = ctypes.CDLL(ctypes.util.find_library('c'));"
             "v = ctypes.c_int(); libc.prctl(2, ctypes.byref(v), 0, 0, 0); print(v.value)")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         preexec_fn=_child_ends_with_parent, timeout=60)
    assert out.stdout.strip() == str(int(signal.SIGTERM))
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "0"


def test_check_params_runs_before_every_other_stage():
    """check_params writes a marker that prepare depends on, and every other stage is downstream of it in DVC's own
    graph: DVC runs the checks first, whichever stage is asked for."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    assert stages["check_params"]["outs"] == ["cache/params_checked"]
    assert "cache/params_checked" in stages["prepare"]["deps"]
    pytest.importorskip("dvc")
    import networkx as nx
    from dvc.repo import Repo

    with Repo(str(REPO)) as repo:
        graph = repo.index.graph          # edges: a stage -> the stages whose outputs it depends on
        check = next(s for s in graph if s.addressing == "check_params")
        upstream_free = [s.addressing for s in graph if s is not check and not nx.has_path(graph, s, check)]
    assert not upstream_free, f"stages DVC may run before check_params: {upstream_free}"
