#!/usr/bin/env bash
# Leave-series-out fold models trained by the library with the default model's own recipe
# (issue 13, targets 1 and 2): `long-hard`'s 20,000 steps with two rounds of hard
# negatives, on the train images of the twelve annotated series outside the fold (the
# same five folds as experiments/fcn_detector.py --kfold 5: the fifteen annotated series
# of both roots sorted, fold I holds out every fifth from the I-th), then eight views,
# relative extent, growth and joining chosen by `xdefect tune-segmenter` on the tuning
# images of those twelve series (the model's lineage: no image of a held-out series
# chooses anything), then every image of the held-out series evaluated once. The operating
# point: `tune-segmenter --max-false-alarms 2` makes the same choice and adds the report
# threshold (DetectParams.min_score) keeping at most 2 false alarms per tuning image
# (tta8-join-fa2); its detections are those of eval-SERIES scoring at least that, so
# experiments/loso_library_pool.py --point -fa2 scores them from the same files.
#   experiments/loso_library.sh FOLD [THREADS] [SEED] [ARCH]
# SEED (default 0) seeds the training; another seed's runs go to runs/seg/loso5-hard-sSEED
# (the same recipe drawn again: how far one fold model is a lucky draw).
# ARCH (default segnet) the registered segmenter trained; another goes to
# runs/seg/loso5-hard-ARCH[-sSEED] (segnet-lcn: the local contrast channel).
# Resumable: training continues from its last checkpoint, finished steps are skipped.
# Outputs: runs/seg/loso5-hard[-ARCH][-sSEED]/foldI/{train,tta8-join,tta8-join-fa2,eval-SERIES}/
set -euo pipefail
cd "$(dirname "$0")/.."
fold=$1; threads=${2:-1}; seed=${3:-0}; arch=${4:-segnet}
. experiments/loso_folds.sh  # X, G, E, held, train, evaluate_held
name=hard; [ "$arch" = segnet ] || name=$name-$arch; [ "$seed" = 0 ] || name=$name-s$seed
w=runs/seg/loso5-$name/fold$fold
mkdir -p $w
if [ ! -e $w/train/model.safetensors ]; then
  resume=(); [ -e $w/train/last.safetensors ] && resume=(--resume)
  $X train-segmenter --out $w/train --gdxray "$G" "$E" --series "${train[@]}" --real \
    --steps 20000 --hard-rounds 2 --arch "$arch" --threads "$threads" --device cpu --seed "$seed" \
    "${resume[@]}"
fi
# the choice, the held-out evaluation and the operating point, in the same folder
LOSO_SOURCE=runs/seg/loso5-$name experiments/loso_retune.sh "$fold" "$name" "$threads"
