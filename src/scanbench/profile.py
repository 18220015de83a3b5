"""Switch the active profile: profiles/<name>.yaml -> params.yaml, optionally on your own data.

    python -m scanbench.profile smoke
    python -m scanbench.profile default --data /path/to/imagefolder [--backbones effnet_lite0]

`--data` and `--backbones` derive every param that depends on them (families, ablation.backbones) and say whether
the `teacher` and `head` stages work, so that
`dvc repro` runs on the new data with no other edit. The profile's comments are kept (ruamel round-trip, the
parser DVC itself uses for `dvc exp run -S`). Every method the params run gets its `explain.<method>` section (the
params key its stages track): a profile states only the settings it chooses, and the others are the method's own
defaults (scanbench.explainers), added as one line each at the end of the explain block. The result is checked as
the check_params stage checks it.
"""
from __future__ import annotations

import argparse
import io
import re
import sys
from pathlib import Path
from typing import Sequence

from .errors import ScanbenchError
from .io import write_text

PROFILES = ("smoke", "default", "paper")


def _yaml():
    from ruamel.yaml import YAML

    y = YAML()  # round-trip: keeps comments, key order and flow/block style
    y.width = 4096
    y.representer.add_representer(type(None), lambda rep, _: rep.represent_scalar("tag:yaml.org,2002:null", "null"))
    return y


def _set_list(node, key: str, values: list[str]) -> None:
    """Replace a list in place, keeping the node's flow/block style and its trailing comment."""
    old = node.get(key)
    if old is not None and hasattr(old, "fa"):
        del old[:]
        old.extend(values)
    else:
        node[key] = list(values)


def derive_for(params, backbones: Sequence[str] | None = None, data_root: str | None = None,
               repo: Path = Path(".")) -> list[str]:
    """Set data.root / backbones and derive the params that must agree with them. Returns what changed, as lines.

    families.<family>: the chosen backbones by registry family (every family key kept, possibly empty: the
    stages that iterate over it then run for no backbone); ablation.backbones: the profile's, restricted to
    the chosen ones; sanity/explain lists are per family and need no change.
    """
    changes = []
    if data_root is not None:
        params["data"]["root"] = data_root
        changes.append(f"data.root = {data_root}")
    if backbones is not None:
        from .backbones import get_backbone  # the registry imports torch/timm: only when backbones change

        if not backbones:
            raise ScanbenchError("--backbones: name at least one backbone")
        specs = [get_backbone(name) for name in backbones]  # unknown name -> one clear line
        _set_list(params, "backbones", list(backbones))
        changes.append(f"backbones = {list(backbones)}")
        families = params["families"]
        for family in sorted(set(families) | {s.family for s in specs}):
            names = [s.name for s in specs if s.family == family]
            if family in families or names:
                _set_list(families, family, names)
                changes.append(f"families.{family} = {names}")
        ablation = params.get("ablation")
        if ablation is not None and "backbones" in ablation:
            kept = [b for b in ablation["backbones"] if b in backbones]
            _set_list(ablation, "backbones", kept)
            changes.append(f"ablation.backbones = {kept}" + ("  (the P sweep alone: no alpha, layer or "
                                                               "component ablation)" if not kept else ""))
        trained = [s.name for s in specs if s.trained_here]
        changes.append("teacher stage: " + (f"runs (trains {', '.join(trained)})" if trained else
                                              "skips (no backbone is trained in the pipeline)"))
    if data_root is not None or backbones is not None:
        changes.append(head_line(params, data_root, repo))
    return changes


def _other_data(params, repo: Path, root: Path) -> bool:
    """Whether `root` is another directory than the profile's data.root while the profile names a boxes file."""
    if params.get("data", {}).get("boxes") is None:
        return False
    own = Path(params["data"]["root"])
    return (own if own.is_absolute() else repo / own).resolve() != root.resolve()


def head_line(params, data_root: str | None, repo: Path = Path(".")) -> str:
    """Whether the `head` stage will fit heads, as one line: it does for a backbone without an ImageNet classifier
    (timm's pretrained_cfg), and for every pretrained one when a class folder of the data is not an ImageNet wnid
    (read here from the data root's first split when it exists; `prepare` decides at run time)."""
    from .data import imagenet_wnid_index
    from .head import heads_needed

    root = Path(data_root if data_root is not None else params["data"]["root"])
    root = root if root.is_absolute() else repo / root
    first = root / params["data"]["splits"][0]
    if first.is_dir():
        wnids = imagenet_wnid_index()
        indices = [wnids.get(d.name, (-1, ""))[0] for d in sorted(first.iterdir()) if d.is_dir()]
        needed = heads_needed(params, indices)
        seen = f"the {len(indices)} class folders under {first}"
    else:
        needed = heads_needed(params, [])       # the backbones alone; the data's classes are checked at run time
        seen = "the backbones (the data root is not here: its classes are checked when `prepare` runs)"
    if not needed:
        return f"head stage: skips (ImageNet heads and ImageNet classes, from {seen})"
    why = "; ".join(f"{name}: {reason}" for name, reason in needed.items())
    return f"head stage: fits a linear probe for {', '.join(needed)} ({why}; from {seen})"


def method_sections(params) -> dict[str, dict]:
    """The explain.<method> sections a params file lacks: one for each method of explain.baselines and
    sanity.methods without one (each explain and sanity stage tracks its method's section, so DVC needs it),
    holding the method's settings' defaults, in table order. The methods declare their defaults
    (scanbench.explainers), so a profile states only the settings it chooses. A method with a setting that has no
    default is left out (the check that follows names the key)."""
    explain = params.get("explain") or {}
    tracked = [(m, f"{section}.{key}.{family}") for section, key in (("explain", "baselines"), ("sanity", "methods"))
               for family, ms in ((params.get(section) or {}).get(key) or {}).items() for m in ms or []]
    missing = {m: where for m, where in tracked if m not in explain}
    if not missing:
        return {}
    from .explainers.base import check_method, registered_methods

    for m in sorted(missing):
        check_method(m, where=missing[m])   # a name no method is registered under: one line naming it and its key
    return {m: cls.Settings.defaults() for m, cls in registered_methods().items()
            if m in missing and not cls.Settings.required()}


def insert_sections(text: str, sections: dict[str, dict]) -> str:
    """`text` with a `<method>: {...}` line per section at the end of its top-level `explain:` block (after its own
    lines, before the blank lines and comments that lead into the next section); every other line as written."""
    import yaml

    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"explain:\s*(#.*)?$", line)), None)
    if start is None:   # no explain section yet
        lines += (["\n"] if lines and not lines[-1].endswith("\n") else []) + ["explain:\n"]
        start = len(lines) - 1
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"[^\s#]", lines[i])), len(lines))
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    body = [line for line in lines[start + 1:end] if line.strip() and not line.lstrip().startswith("#")]
    indent = re.match(r"\s*", body[0]).group() if body else "  "
    new = [indent + yaml.safe_dump({m: d}, default_flow_style=None, sort_keys=False, width=10**6)
           for m, d in sections.items()]
    if end > 0 and not lines[end - 1].endswith("\n"):
        lines[end - 1] += "\n"
    out = "".join(lines[:end] + new + lines[end:])
    expected = yaml.safe_load(text) or {}
    expected["explain"] = {**(expected.get("explain") or {}), **sections}
    if yaml.safe_load(out) != expected:
        raise ScanbenchError("params: could not add the explain.<method> sections to this file's explain block "
                             f"({', '.join(sections)}): write them in the profile")
    return out


def use_profile(name: str, repo: Path = Path("."), data_root: str | None = None,
                backbones: Sequence[str] | None = None) -> tuple[Path, list[str]]:
    if name not in PROFILES:
        raise ScanbenchError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    import yaml

    from .param_checks import check_all_params  # the registries import torch: a second or two

    src = repo / "profiles" / f"{name}.yaml"
    dst = repo / "params.yaml"
    text = src.read_text()
    changes: list[str] = []
    if data_root is not None or backbones is not None:
        if data_root is not None:
            root = Path(data_root)
            resolved = root if root.is_absolute() else (repo / root)
            if not resolved.is_dir():
                raise ScanbenchError(f"--data {data_root}: no such directory (relative paths are from the repo root)")
        y = _yaml()
        params = y.load(text)
        boxes_dropped = data_root is not None and _other_data(params, repo, resolved)
        changes = derive_for(params, backbones, data_root, repo)
        if boxes_dropped:   # the profile's boxes name images of its own data root (the smoke profile's)
            params["data"]["boxes"] = None
            changes.append("data.boxes = null (the profile's boxes are for its own data; put a boxes.csv in yours)")
        buf = io.StringIO()
        y.dump(params, buf)
        text = buf.getvalue()
    sections = method_sections(yaml.safe_load(text) or {})
    if sections:
        text = insert_sections(text, sections)
        changes.append(f"explain.<method> from the methods' defaults (their stages track it): {', '.join(sections)}")
    written = yaml.safe_load(text) or {}
    check_all_params(written)   # every name and value, as the check_params stage checks them
    write_text(dst, text)
    return dst, changes


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m scanbench.profile",
                                 description="Write params.yaml from a profile, optionally on your own data.")
    ap.add_argument("profile", choices=PROFILES)
    ap.add_argument("--data", metavar="ROOT", help="an ImageFolder root with train/<class>/ and val/<class>/ "
                                                   "(ImageNet wnids keep ImageNet heads; other names get a head "
                                                   "fitted by the `head` stage; relative paths are from the repo "
                                                   "root)")
    ap.add_argument("--backbones", metavar="A,B", help="comma-separated registered backbones (default: the profile's)")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    backbones = None if args.backbones is None else [b for b in args.backbones.split(",") if b]
    try:
        dst, changes = use_profile(args.profile, data_root=args.data, backbones=backbones)
    except ScanbenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"params.yaml now holds the {args.profile} profile ({dst})")
    for line in changes:
        print(f"  {line}")
    if args.profile != COMMITTED_RUN or args.data is not None or backbones is not None:
        print(replaces_note(args.profile))
    return 0


COMMITTED_RUN = "default"   # the profile whose run dvc.lock and reports/ hold in git


def replaces_note(profile: str) -> str:
    """One line: what the next `dvc repro` replaces, and how to get the committed run back."""
    replaced = "dvc.lock, reports/" + (f" and results/{profile}/" if profile == COMMITTED_RUN else "")
    paths = "dvc.lock reports" + (f" results/{profile}" if profile == COMMITTED_RUN else "")
    return (f"note: the next `dvc repro` replaces {replaced} of the committed {COMMITTED_RUN} run with this run's; "
            f"to get the committed run back: `git checkout {paths} && python -m scanbench.profile {COMMITTED_RUN}`")


if __name__ == "__main__":
    raise SystemExit(main())
