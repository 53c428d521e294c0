#!/usr/bin/env bash
# The paper's protocol with every window at its own contrast (issue 13, target 3):
# `xnet2-paper`'s recipe (E100/G000 simulated defects only, from the train images of the
# paper's seven series; experiments/bundled_models.sh step 1) with the architecture
# `xnet2-stretch` (Xnet-II stretching each window to its own contrast inside the network,
# docs/models.md) instead of `xnet2`, the same dataset, budget and seed; its detection
# settings chosen on the tuning images in patch mode on the same grid as `xnet2-paper`'s
# (experiments/tune_detection.py --mode patch --base-stride 8). The test images are not
# read here. Resumable: each step is skipped when its output exists.
#   experiments/xnet2_stretch.sh [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
X=.venv/bin/xdefect
PY=.venv/bin/python
G=${XDEFECT_GDXRAY:-../shared/data/gdxray}
PAPER="C0001 C0010 C0015 C0021 C0031 C0034 C0061"
THREADS=${1:-1}
run=runs/xnet2-stretch
[ -e data/paper-e100g000 ] || $X dataset build --gdxray "$G" --series $PAPER --out data/paper-e100g000 --mu 0.004 0.04
if [ ! -e $run/done ]; then
  resume=(); [ -e $run/last.safetensors ] && resume=(--resume)
  $X train --out $run --data data/paper-e100g000 --arch xnet2-stretch --epochs 10 --batch 128 --lr 0.001 --patience 4 --seed 0 --samples-per-epoch 100000 --val-samples 20000 --threads "$THREADS" "${resume[@]}"
  touch $run/done
fi
[ -e runs/tune-xnet2-stretch.json ] || $PY experiments/tune_detection.py --model $run/best.safetensors --gdxray "$G" --split tuning --mode patch --base-stride 8 --compare-images 0 --out runs/tune-xnet2-stretch.json > /dev/null
echo "done: runs/tune-xnet2-stretch.json"
