"""`dvc plots show` renders offline: DVC's own page loads Vega from a CDN, so offline the training-curve
plots rendered as nothing. .dvc/config points `plots.html_template` at .dvc/plots/offline.html, which inlines the
vendored Vega builds; these tests render a page through DVC and check it loads nothing from the network."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / ".dvc" / "plots" / "offline.html"
# the only URLs the inlined libraries hold: XML namespaces, the Vega schema id, links shown in menus/messages
INERT_URLS = ("http://www.w3.org/", "https://vega.github.io/", "https://github.com/", "http://", "https://")
LOADING = re.compile(r"""(?:src|href|action)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?\s*(?:https?:)?//|@import"""
                     r"""|<script[^>]*\bsrc=|<link\b""", re.I)


def assert_offline(html: str, specs: int = 1) -> None:
    assert "cdn.jsdelivr" not in html and "cdn.plot.ly" not in html
    assert not LOADING.findall(html), LOADING.findall(html)[:5]
    urls = re.findall(r"https?://[^\s\"'`)<>]*", html)
    assert all(u.startswith(INERT_URLS[:3]) or u in INERT_URLS[3:] for u in urls), sorted(set(urls))
    # the handful in the libraries (namespaces, schema id, editor link), and each plot's schema id
    assert len(urls) <= 11 + specs


def test_config_points_dvc_at_the_offline_template():
    config = (REPO / ".dvc" / "config").read_text()
    assert re.search(r"\[plots\]\s*\n\s*html_template = plots/offline.html", config)
    page = TEMPLATE.read_text()
    assert "{plot_divs}" in page and "{scripts}" not in page       # DVC's CDN tags go into {scripts}
    for lib in ("vega-5", "vega-lite-5", "vega-embed-6"):
        assert f"/* {lib}" in page
    for lic in ("LICENSE.vega", "LICENSE.vega-lite", "LICENSE.vega-embed"):
        assert "BSD" in (TEMPLATE.parent / "vendor" / lic).read_text() or \
            "Redistribution and use" in (TEMPLATE.parent / "vendor" / lic).read_text()
    assert "/dvc_plots/" in (REPO / ".gitignore").read_text().splitlines()


def test_template_substitution_has_no_network_reference(tmp_path):
    """dvc-render's own page builder (what `dvc plots show` calls) with our template."""
    from dvc_render import VegaRenderer, render_html

    rows = [{"epoch": i, "loss": 1.0 / i} for i in range(1, 5)]
    renderer = VegaRenderer(rows, "curves.csv", x="epoch", y="loss", template="linear")
    out = render_html([renderer], tmp_path / "index.html", html_template=str(TEMPLATE))
    html = Path(out).read_text()
    assert "vegaEmbed('#" in html and '"loss"' in html
    assert_offline(html)
    # DVC's default page, for contrast, loads the three libraries from the CDN
    default = Path(render_html([renderer], tmp_path / "default.html")).read_text()
    assert "https://cdn.jsdelivr.net/npm/vega@" in default
    with pytest.raises(AssertionError):
        assert_offline(default)


@pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="needs dvc and git")
def test_dvc_plots_show_renders_offline(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "curves.csv").write_text("epoch,loss,conf_area\n1,0.9,0.3\n2,0.6,0.25\n3,0.5,0.21\n")
    (repo / "dvc.yaml").write_text("plots:\n  - SCAN training curves:\n      template: linear\n      x: epoch\n"
                                   "      y:\n        curves.csv: [loss, conf_area]\n")
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert subprocess.run(cmd, cwd=repo, env=env, capture_output=True).returncode == 0
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots")
    shutil.copyfile(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    res = subprocess.run(["dvc", "plots", "show", "-o", "out"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr
    html = (repo / "out" / "index.html").read_text()
    assert_offline(html)
    specs = [json.loads(s) for s in re.findall(r"var spec = (.*?);\n\s*vegaEmbed\(", html, re.S)]
    assert len(specs) == 1
    if shutil.which("node") is None:
        pytest.skip("node not found: the page's libraries were not run")
    # run the page's own inlined libraries headless (node has no network here either) and render the plot to SVG
    libs = re.findall(r'<script type="text/javascript">/\* \S+ [^*]*\*/\n(.*?)\n    </script>', html, re.S)
    assert len(libs) == 3
    (tmp_path / "in.json").write_text(json.dumps({"libs": libs, "specs": specs}))
    res = subprocess.run(["node", str(REPO / "tests" / "data" / "render_vega_offline.js"), str(tmp_path / "in.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    out = json.loads(res.stdout)
    assert out["embed"] == "function" and out["vega"].startswith("5.")
    svg = out["out"][0]
    assert svg["paths"] > 10 and not svg["external"]     # axes, gridlines and the two lines were drawn


def _curves(path: Path, header: str, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows))


@pytest.mark.skipif(shutil.which("dvc") is None or shutil.which("git") is None, reason="needs dvc and git")
def test_the_projects_plots_render_one_colour_per_series(tmp_path):
    """dvc.yaml's own `plots:` on synthetic step-level curves (two backbones, a ViT trained here): one plot per
    quantity, each with its title and named axes, one colour and a short legend name per series."""
    repo = tmp_path / "repo"
    repo.mkdir()
    plots = [p for p in yaml.safe_load((REPO / "dvc.yaml").read_text())["plots"] if isinstance(p, dict)]
    (repo / "dvc.yaml").write_text(yaml.safe_dump({"plots": plots}))
    (repo / "params.yaml").write_text(yaml.safe_dump({"profile": "t", "families": {"cnn": ["cnn_a"],
                                                                                     "vit": ["vit_b"]}}))
    for k, b in enumerate(("cnn_a", "vit_b")):
        _curves(repo / f"results/t/train_scan/{b}/default/curves.csv", "step,epoch,loss,conf_area,recon_err",
                [(10 * s, 1 + s // 12, 1.0 / s + k, 0.5 - 0.01 * s, 0.1 / s) for s in range(1, 40)])
    _curves(repo / "results/t/targets/vit_b_steps.csv", "step,epoch,loss,train_top1,lr",
            [(s, 1 + (s - 1) // 10, 2.0 / s, 40 + s, 1e-3) for s in range(1, 31)])
    _curves(repo / "results/t/targets/vit_b_curves.csv", "epoch,step,loss,train_top1,val_top1,lr",
            [(e, 10 * e, 1.0 / e, 50 + 5 * e, 45 + 6 * e, 1e-3) for e in range(1, 4)])
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"]):
        assert subprocess.run(cmd, cwd=repo, env=env, capture_output=True).returncode == 0
    shutil.copytree(REPO / ".dvc" / "plots", repo / ".dvc" / "plots", dirs_exist_ok=True)
    shutil.copyfile(REPO / ".dvc" / "config", repo / ".dvc" / "config")
    res = subprocess.run(["dvc", "plots", "show", "-o", "out"], cwd=repo, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0 and "failed" not in res.stderr, res.stderr
    html = (repo / "out" / "index.html").read_text()
    assert_offline(html, specs=len(plots))
    specs = [json.loads(s) for s in re.findall(r"var spec = (.*?);\n\s*vegaEmbed\(", html, re.S)]
    assert len(specs) == len(plots) >= 4
    quantities = set()
    for spec, plot in zip(specs, plots):
        (name, props), = plot.items()
        enc = spec["encoding"]
        assert spec["title"]["text"] == props["title"] and enc["x"]["title"] == props["x_label"]
        assert enc["y"]["title"] == props["y_label"] and enc["color"]["field"] == "series"
        fields = {f for v in props["y"].values() for f in ([v] if isinstance(v, str) else v)}
        quantities.add(frozenset(fields))
        assert props["x"] == "step"
    assert {frozenset({"loss"}), frozenset({"conf_area"})} <= quantities    # loss and area apart
    if shutil.which("node") is None:
        pytest.skip("node not found: the page's libraries were not run")
    libs = re.findall(r'<script type="text/javascript">/\* \S+ [^*]*\*/\n(.*?)\n    </script>', html, re.S)
    (tmp_path / "in.json").write_text(json.dumps({"libs": libs, "specs": specs}))
    res = subprocess.run(["node", str(REPO / "tests" / "data" / "render_vega_offline.js"), str(tmp_path / "in.json")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-500:]
    greys = {"#888888", "#dddddd", "#000000", "#ffffff"}
    for svg, plot in zip(json.loads(res.stdout)["out"], plots):
        (name, props), = plot.items()
        series = len(props["y"])
        assert len(set(svg["strokes"]) - greys) == series, (name, svg["strokes"])   # a colour per series
        if series > 1:   # the legend names each series briefly: the backbone (and layer / field)
            legend = [t for t in svg["texts"] if t.startswith(("cnn_a", "vit_b"))]
            assert len(legend) == series and all(len(t) <= 24 for t in legend), (name, legend)
        assert props["title"] in svg["texts"] and props["x_label"] in svg["texts"]
