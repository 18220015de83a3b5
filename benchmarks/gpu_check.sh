#!/usr/bin/env bash
# GPU check, under 8 minutes on a GPU box, from the repo root:
#
#     benchmarks/gpu_check.sh                  # needs CUDA; writes reports/benchmarks/gpu_check.{md,json}
#     benchmarks/gpu_check.sh --cpu-dry-run    # anywhere: the same code path at tiny sizes, no smoke repro
#     benchmarks/gpu_check.sh --out DIR        # write the report elsewhere
#     benchmarks/gpu_check.sh --device cpu --out DIR   # the full check on the CPU (a baseline; far over 8 min)
#
# 1. the smoke DAG (`dvc repro`) with compute.device = cuda, in a throw-away clone of the committed HEAD (your
#    results, dvc.lock and params.yaml are not touched; uncommitted changes are not in it), then its metrics
#    against the committed CPU reference (scanbench.stages.compare_metrics; recorded, not fatal);
# 2. the paper-width SCAN decoders' training throughput (images/s);
# 3. SCAN vs Grad-CAM time per image on ViT-B/16 with random weights (scanbench.timing.measure_methods).
# Parts 2-3: benchmarks/gpu_check.py. Each part has its own time limit (GPU_CHECK_DAG_S, _DECODER_S, _VIT_S, in
# seconds); a part that fails or runs out of time is reported as such and the script exits 1.
# Without CUDA it refuses in one line (exit 2). The dry run writes to .ci_work/gpu_check_dry/ unless --out.
set -euo pipefail

DRY=0
OUT=""
DEVICE=cuda
while [[ $# -gt 0 ]]; do
  case "$1" in
    --cpu-dry-run) DRY=1 ;;
    --out) [[ $# -ge 2 ]] || { echo "gpu_check: --out needs a folder" >&2; exit 2; }; OUT="$2"; shift ;;
    --device) [[ $# -ge 2 && "$2" =~ ^(cpu|cuda(:[0-9]+)?)$ ]] ||
                { echo "gpu_check: --device needs cpu, cuda or cuda:N" >&2; exit 2; }; DEVICE="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1' (use --cpu-dry-run, --out DIR, --device DEV)" >&2; exit 2 ;;
  esac
  shift
done

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
export DVC_NO_ANALYTICS=1
cd "$REPO"

if [[ $DRY == 1 ]]; then
  DEVICE=cpu
  OUT="${OUT:-$REPO/.ci_work/gpu_check_dry}"
  DAG_S=${GPU_CHECK_DAG_S:-120}; DECODER_S=${GPU_CHECK_DECODER_S:-120}; VIT_S=${GPU_CHECK_VIT_S:-180}
elif [[ $DEVICE == cpu ]]; then
  [[ -n "$OUT" ]] || { echo "gpu_check: --device cpu needs --out DIR (reports/benchmarks/gpu_check.md is the GPU's)" >&2; exit 2; }
  DAG_S=${GPU_CHECK_DAG_S:-3600}; DECODER_S=${GPU_CHECK_DECODER_S:-900}; VIT_S=${GPU_CHECK_VIT_S:-900}
else
  if ! PYTHONPATH="$REPO/src" "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' \
      2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then smi="nvidia-smi is present"; else smi="no nvidia-smi"; fi
    echo "gpu_check: no CUDA device here (torch.cuda.is_available() is False; $smi): run it on a GPU machine, or with --cpu-dry-run to check the script" >&2
    exit 2
  fi
  OUT="${OUT:-$REPO/reports/benchmarks}"
  DAG_S=${GPU_CHECK_DAG_S:-370}; DECODER_S=${GPU_CHECK_DECODER_S:-40}; VIT_S=${GPU_CHECK_VIT_S:-50}
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
GPU="$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 || true)"
COMMIT="$(git -C "$REPO" rev-parse --short HEAD)"
[[ -z "$(git -C "$REPO" status --porcelain --untracked-files=no)" ]] ||
  echo "gpu_check: note: uncommitted changes are not in the smoke run (it clones HEAD $COMMIT)" >&2

# ---- 1. smoke DAG in a clone, on the smoke data root this checkout's smoke profile names
echo "== smoke DAG (compute.device=$DEVICE) in a clone of $COMMIT"
DATA="$(cd "$REPO" && PYTHONPATH="$REPO/src" "$PY" -c '
import sys, yaml
from pathlib import Path
root = Path(yaml.safe_load(open("profiles/smoke.yaml"))["data"]["root"])
print((root if root.is_absolute() else Path.cwd() / root).resolve())')"
git clone -q "$REPO" "$WORK/repo"
run_dag() {   # in the clone: its own code on the path
  cd "$WORK/repo"
  export PYTHONPATH="$WORK/repo/src"
  "$PY" -m scanbench.profile smoke --data "$DATA" >/dev/null
  grep -q '^  device: auto' params.yaml || { echo "gpu_check: params.yaml has no 'device: auto' under compute" >&2; return 2; }
  sed -i "s/^  device: auto/  device: $DEVICE/" params.yaml
  if [[ $DRY == 1 ]]; then
    local dag_rc=0 status_rc=0
    dvc dag >/dev/null || dag_rc=$?
    dvc status >/dev/null || status_rc=$?
    printf '{"dry_run": true, "device": "%s", "commit": "%s", "gpu": "%s", "started": "%s", "repro_rc": null, "dag_rc": %d, "status_rc": %d}\n' \
      "$DEVICE" "$COMMIT" "$GPU" "$STARTED" "$dag_rc" "$status_rc" > "$WORK/dag.json"
    return $(( dag_rc || status_rc ))
  fi
  local t0 rc=0 crc=0 summary
  t0=$(date +%s)
  timeout --kill-after=10 "$DAG_S" dvc repro > "$WORK/repro.log" 2>&1 || rc=$?
  local secs=$(( $(date +%s) - t0 ))
  tail -5 "$WORK/repro.log"
  summary="not compared (the run failed)"
  if [[ $rc == 0 ]]; then
    "$PY" -m scanbench.stages.compare_metrics --reference reports/reference/smoke --current reports/metrics \
      > "$WORK/compare.log" 2>&1 || crc=$?
    summary="$(grep -E 'metrics compared' "$WORK/compare.log" | tail -1 | tr -d '"' || true)"
  fi
  printf '{"dry_run": false, "device": "%s", "commit": "%s", "gpu": "%s", "started": "%s", "repro_rc": %d, "repro_seconds": %d, "compare_rc": %s, "compare_summary": "%s"}\n' \
    "$DEVICE" "$COMMIT" "$GPU" "$STARTED" "$rc" "$secs" "$([[ $rc == 0 ]] && echo "$crc" || echo null)" "$summary" \
    > "$WORK/dag.json"
  return "$rc"
}
STARTED="$(date -u +%Y-%m-%dT%H:%MZ)"
FAILED=0
( run_dag ) || { echo "gpu_check: smoke DAG failed (see above)" >&2; FAILED=1; }

# ---- 2-3. decoder throughput, ViT-B/16 timing (this checkout's code)
export PYTHONPATH="$REPO/src"
DRY_FLAG=(); [[ $DRY == 1 ]] && DRY_FLAG=(--dry-run)
echo "== paper-width decoder throughput"
timeout --kill-after=10 "$DECODER_S" "$PY" benchmarks/gpu_check.py decoder --device "$DEVICE" "${DRY_FLAG[@]}" \
  --out "$WORK/decoder.json" || { echo "gpu_check: decoder part failed or timed out" >&2; FAILED=1; }
echo "== SCAN vs Grad-CAM on ViT-B/16"
timeout --kill-after=10 "$VIT_S" "$PY" benchmarks/gpu_check.py vit --device "$DEVICE" "${DRY_FLAG[@]}" \
  --out "$WORK/vit.json" || { echo "gpu_check: vit part failed or timed out" >&2; FAILED=1; }

"$PY" benchmarks/gpu_check.py report --dag "$WORK/dag.json" --decoder "$WORK/decoder.json" --vit "$WORK/vit.json" \
  --compare "$WORK/compare.log" --out "$OUT" || FAILED=1
echo "gpu_check: wrote $OUT/gpu_check.md"
exit "$FAILED"
