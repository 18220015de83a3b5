// Render each Vega(-Lite) spec of a `dvc plots show` page with the page's own inlined libraries, headless, offline.
const fs = require("fs"), vm = require("vm");
const {libs, specs} = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
for (const js of libs) vm.runInThisContext(js);      // UMD builds: no `exports` here, so they set globalThis.vega...
(async () => {
  const out = [];
  for (const spec of specs) {
    const vg = String(spec.$schema || "").includes("vega-lite") ? vegaLite.compile(spec).spec : spec;
    const view = new vega.View(vega.parse(vg), {renderer: "none"});
    const svg = await view.toSVG();
    out.push({paths: (svg.match(/<path/g) || []).length, bytes: svg.length, external: /(href|src)="https?:/.test(svg),
              texts: Array.from(svg.matchAll(/<text[^>]*>([^<]*)<\/text>/g), m => m[1]),
              strokes: Array.from(new Set(Array.from(svg.matchAll(/stroke="(#[0-9a-fA-F]{6})"/g), m => m[1])))});
  }
  console.log(JSON.stringify({vega: vega.version, vegaLite: vegaLite.version, embed: typeof vegaEmbed, out}));
})().catch(e => { console.error(String(e).slice(0, 500)); process.exitCode = 1; });
