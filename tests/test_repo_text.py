"""The repository speaks of the software, never of its own development.

No tracked text file names a numbered issue or work session, cites a reference document the repository does not
hold (the method's definitions live in docs/METHODS.md), or holds an absolute path of one machine. The check reads
every file `git ls-files` lists and fails naming file:line for each mention.

Excluded: the committed run's generated outputs (reports/README.md, reports/tables/, reports/metrics/,
reports/timing/, reports/figures/). The pipeline writes them and the next run rewrites them, so a mention there is
fixed in the code that writes it (e.g. scanbench/report/readme.py), never by hand. Binary files are skipped.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GENERATED = ("reports/README.md", "reports/tables/", "reports/metrics/", "reports/timing/", "reports/figures/")

# Assembled from pieces, so that this file does not match its own patterns.
_ISSUE = "[Ii]" + "ssue"
_SESSION = "[Ss]" + "ession"
_SPEC = "SP" + "EC"
PATTERNS = {
    "an issue number": rf"\b{_ISSUE}[ -]?[0-9]+",
    "a session number": rf"\b{_SESSION}[ -][0-9]+",
    "a reference document not in the repository": rf"\b{_SPEC}(\.md\b|\b)",
    "a machine path": "/" + "work/|/" + "home/",
}
MENTION = re.compile("|".join(f"(?:{p})" for p in PATTERNS.values()))


def tracked_files() -> list[str]:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the check reads `git ls-files`")
    res = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"not a git checkout ({res.stderr.decode(errors='replace').strip()}): the check reads "
                    "`git ls-files`")
    return [p for p in res.stdout.decode().split("\0") if p]


def is_generated(path: str) -> bool:
    return any(path == g or (g.endswith("/") and path.startswith(g)) for g in GENERATED)


def mentions(text: str) -> list[tuple[int, str]]:
    return [(n, m.group(0)) for n, line in enumerate(text.splitlines(), 1) for m in [MENTION.search(line)] if m]


def test_the_patterns_catch_what_they_are_for():
    caught = ["see iss" + "ue 13", "(Iss" + "ue-7)", "iss" + "ue12-smoke", "sess" + "ion 10", "Sess" + "ion-11",
              "SP" + "EC §6", "SP" + "EC.md", "/" + "work/shared/x", "/" + "home/u/x"]
    kept = ["ONNX Runtime sessions", "scope=\"session\"", "an issue of float rounding", "SPECIAL, EXEMPLARY",
            "BackboneSpec", "spec.input_size", "data/boxes.csv"]
    assert all(MENTION.search(s) for s in caught), [s for s in caught if not MENTION.search(s)]
    assert not any(MENTION.search(s) for s in kept), [s for s in kept if MENTION.search(s)]


def test_no_tracked_text_file_speaks_of_issues_sessions_or_machine_paths():
    found = []
    for rel in tracked_files():
        if is_generated(rel):
            continue
        path = REPO / rel
        if not path.is_file():     # listed but absent (a sparse checkout, a deletion not yet staged)
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            continue
        found += [f"{rel}:{n}: {hit!r}" for n, hit in mentions(text)]
    assert not found, ("tracked files speak of the project's development (state the fact about the software "
                       "instead):\n" + "\n".join(found))
