#!/usr/bin/env bash
# Leave-series-out fold models of the library recipe (experiments/loso_library.sh: the
# default's `train-segmenter --real --hard-rounds 2`, 20,000 steps, on the train images of
# the twelve annotated series outside the fold) with the eleven unannotated series of
# ../shared/data/gdxray-unannotated added to the training images (their train images,
# n % 4 == 3): backgrounds for simulated voids from castings no fold holds out, never
# mined for hard negatives and never scored (issue 13: "the eleven unannotated series as
# backgrounds for simulated defects"; the fully convolutional folds gained from them,
# fcn_detector.py --backgrounds). Then the choice on the twelve series' tuning images with
# the library's relative-extent grid, the held-out evaluation and the operating point
# (experiments/loso_retune.sh, NAME bg-ext[-sSEED]).
#   experiments/loso_backgrounds.sh FOLD [THREADS] [SEED]
# XDEFECT_UNANNOTATED (environment): the unannotated root. Resumable like loso_library.sh.
# Outputs: runs/seg/loso5-bg[-sSEED]/foldI/train/, runs/seg/loso5-bg-ext[-sSEED]/foldI/
set -euo pipefail
cd "$(dirname "$0")/.."
fold=$1; threads=${2:-1}; seed=${3:-0}
. experiments/loso_folds.sh  # X, G, E, held, train, evaluate_held
U=${XDEFECT_UNANNOTATED:-../shared/data/gdxray-unannotated}
read -r -a bg <<< "$(.venv/bin/python -c 'import sys
from xdefect import gdxray
print(" ".join(gdxray.list_series(sys.argv[1])))' "$U")"
suffix=""; [ "$seed" = 0 ] || suffix=-s$seed
w=runs/seg/loso5-bg$suffix/fold$fold
mkdir -p $w
if [ ! -e $w/train/model.safetensors ]; then
  resume=(); [ -e $w/train/last.safetensors ] && resume=(--resume)
  $X train-segmenter --out $w/train --gdxray "$G" "$E" "$U" --series "${train[@]}" "${bg[@]}" \
    --real --steps 20000 --hard-rounds 2 --threads "$threads" --device cpu --seed "$seed" \
    "${resume[@]}"
fi
LOSO_SOURCE=runs/seg/loso5-bg$suffix experiments/loso_retune.sh "$fold" "bg-ext$suffix" \
  "$threads" -- --extent-fractions 0 0.2 0.3 0.4 0.5 0.6
