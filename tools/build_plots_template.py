"""Build .dvc/plots/offline.html: the HTML page `dvc plots show` fills, with Vega inlined (no CDN).

    (cd DIR && npm pack vega@5.33.1 vega-lite@5.23.0 vega-embed@6.29.0)     # the versions vendored now
    python tools/build_plots_template.py DIR/vega-5.33.1.tgz DIR/vega-lite-5.23.0.tgz DIR/vega-embed-6.29.0.tgz

DVC's own page loads vega, vega-lite and vega-embed from cdn.jsdelivr.net through its `{scripts}` placeholder, so
offline the Vega plots render as nothing. This page leaves `{scripts}` out and inlines the three minified builds
(BSD-3-Clause; their licenses are in .dvc/plots/vendor/), so the page DVC writes is self-contained. DVC finds the
page through `.dvc/config` (`plots.html_template = plots/offline.html`, a path relative to .dvc/).
"""
from __future__ import annotations

import hashlib
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / ".dvc" / "plots" / "offline.html"
VENDOR = ROOT / ".dvc" / "plots" / "vendor"
BUILDS = {"vega": "package/build/vega.min.js", "vega-lite": "package/build/vega-lite.min.js",
          "vega-embed": "package/build/vega-embed.min.js"}

PAGE = """<!DOCTYPE html>
<!-- scanbench: DVC's plots page with Vega inlined, so that `dvc plots show` renders offline.
     Built by tools/build_plots_template.py from {sources}; licenses in .dvc/plots/vendor/. -->
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{scripts}
    <style>
        table {{
            border-spacing: 15px;
        }}
    </style>
</head>
<body>
    {{plot_divs}}
</body>
</html>
"""


def build(tarballs: list[Path]) -> str:
    scripts, sources = [], []
    for name, member in BUILDS.items():
        tgz = next((t for t in tarballs if t.name.startswith(f"{name}-") and t.name[len(name) + 1].isdigit()), None)
        if tgz is None:
            raise SystemExit(f"no {name}-<version>.tgz among {', '.join(map(str, tarballs))}")
        with tarfile.open(tgz) as tf:
            js = tf.extractfile(member).read().decode("utf8")
        if "</script" in js or any(p in js for p in ("{scripts}", "{plot_divs}", "{refresh_tag}")):
            raise SystemExit(f"{tgz}: the build holds text that would break the page; inline it by hand")
        js = "\n".join(ln for ln in js.splitlines() if not ln.startswith("//# sourceMappingURL="))  # no .map fetch
        digest = hashlib.sha256(js.encode("utf8")).hexdigest()[:16]
        sources.append(f"{tgz.name} ({member}, sha256 {digest}...)")
        scripts.append(f"    <script type=\"text/javascript\">/* {tgz.stem} {member} */\n{js}\n    </script>")
    # the page goes through str.replace of DVC's placeholders only: braces in the JS are left alone
    return PAGE.format(sources=", ".join(sources), scripts="\n".join(scripts))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(build([Path(a) for a in sys.argv[1:]]), encoding="utf8")
    print(f"wrote {OUT} ({OUT.stat().st_size / 1e6:.2f} MB)")
