#!/usr/bin/env bash
# One prepared GPU check (< 8 minutes on one GPU), printing figures for BENCHMARKS.md:
#   1. whisper-base (real packaged weights) at fp16: clips/s, RTF, peak GPU memory; cut and padded-30 s
#      input, batched against per-clip (bench/extract_speed.py --whisper);
#   2. the wav2vec2-large-robust architecture (random weights from its config) at fp16, the same figures;
#   3. the cross_attention head on a CREMA-D-sized synthetic cache (7442 clips, audio 130 x 1024,
#      visual 16 x 768): wall time of 50 epochs and peak GPU memory (target: under 8 GB).
# Needs emo installed with the README's setup command (whisper packages included). Real Korean wavs
# are used when ../shared/data is present, synthetic noise otherwise.
#
#   bash bench/gpu_check.sh            # on a GPU machine
#   SMOKE=1 bash bench/gpu_check.sh    # a few clips / epochs on CPU: checks the script runs, no figures
# Results also go to $OUT/gpu_check.txt when OUT is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
LOG="${OUT:-/tmp}/gpu_check.txt"
: > "$LOG"

if [[ "${SMOKE:-0}" == 1 ]]; then
  DEVICE=cpu; CLIPS=3; FIT_CLIPS=120; EPOCHS=1; BUDGET=30; LIMIT=300; LARGE=""  # mid wav2vec2: quick on CPU
else
  DEVICE=cuda; CLIPS=200; FIT_CLIPS=7442; EPOCHS=50; BUDGET=240; LIMIT=170; LARGE="--large-robust"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOG"
fi
python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$LOG"

step() {  # step NAME SECONDS COMMAND...: one bounded step; a failure or timeout is reported, the rest still runs
  local name=$1 seconds=$2; shift 2
  echo "== $name ($(date -u +%H:%M:%S))" | tee -a "$LOG"
  local start=$SECONDS rc
  set +e
  timeout "$seconds" "$@" 2>&1 | { grep -v -E "Loading weights|Writing model" || true; } | tee -a "$LOG"
  rc=${PIPESTATUS[0]}
  set -e
  if [[ $rc -ne 0 ]]; then
    echo "!! $name failed (exit $rc; 124 = ran past ${seconds} s)" | tee -a "$LOG"
  fi
  echo "   ($((SECONDS - start)) s)" | tee -a "$LOG"
}

step "whisper-base fp16, cut and pad30" "$LIMIT" \
  python bench/extract_speed.py --whisper whisper-base --device "$DEVICE" --clips "$CLIPS" --budget-s "$BUDGET" --repeats 2
step "wav2vec2 ${LARGE:-mid} fp16" "$LIMIT" \
  python bench/extract_speed.py $LARGE --device "$DEVICE" --clips "$CLIPS" --budget-s "$BUDGET" --repeats 2

FOLDER=$(mktemp -d /tmp/emo-gpu-fit.XXXXXX)
trap 'rm -rf "$FOLDER"' EXIT
step "synthetic CREMA-D-sized cache ($FIT_CLIPS clips)" 120 \
  python -c "import sys; from pathlib import Path; sys.path.insert(0, 'bench'); from fit_speed import build; build(Path('$FOLDER'), $FIT_CLIPS, (130, 1024), (16, 768), seed=0)"
step "cross_attention, $EPOCHS epochs (emo's in-memory fit)" 200 \
  python bench/fit_speed.py --variant emo --folder "$FOLDER" --clips "$FIT_CLIPS" --epochs "$EPOCHS" --device "$DEVICE"
echo "done; figures above and in $LOG"
