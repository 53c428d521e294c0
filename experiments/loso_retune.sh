#!/usr/bin/env bash
# Leave-series-out fold models of experiments/loso_library.sh chosen (that script's own
# last step) or chosen again with other settings in the choice (issue 13, target 1): per
# fold, `xdefect tune-segmenter` on the
# seed-0 fold model (runs/seg/loso5-hard/foldI/train, trained on the other twelve series;
# LOSO_SOURCE below) with eight views, joining and the extra OPTIONs, on the tuning images
# of those twelve series; every image of the held-out series evaluated once; the same
# choice with the report threshold for 2 false alarms per tuning image (the pool:
# experiments/loso_library_pool.py --work runs/seg/loso5-NAME [--point=-fa2]).
# Nothing is retrained.
#   experiments/loso_retune.sh FOLD NAME [THREADS] -- [TUNE-SEGMENTER OPTION...]
# e.g. a wider grid of relative extents:
#   experiments/loso_retune.sh 0 ext 1 -- --extent-fractions 0 0.2 0.3 0.4 0.5 0.6
# LOSO_SOURCE (environment; default runs/seg/loso5-hard): the run whose fold models are
# chosen again (runs/seg/loso5-hard-s1: seed 1's).
# Resumable: finished steps are skipped.
# Outputs: runs/seg/loso5-NAME/foldI/{tta8-join,eval-SERIES,tta8-join-fa2}/
set -euo pipefail
cd "$(dirname "$0")/.."
fold=$1; name=$2; threads=${3:-1}
shift $(($# < 3 ? $# : 3)); [ "${1:-}" = "--" ] && shift
. experiments/loso_folds.sh  # X, G, E, held, train, evaluate_held
model=${LOSO_SOURCE:-runs/seg/loso5-hard}/fold$fold/train/model.safetensors
w=runs/seg/loso5-$name/fold$fold
[ -e "$model" ] || { echo "loso_retune.sh: $model: train it first (experiments/loso_library.sh $fold)" >&2; exit 2; }
mkdir -p $w
[ -e $w/tta8-join/model.safetensors ] || $X tune-segmenter --model $model --tta 8 \
  --joins -1 0 2 4 --threads "$threads" "$@" --out $w/tta8-join
evaluate_held $w $w/tta8-join/model.safetensors
# the operating point: the same choice plus the report threshold for at most 2 false alarms
# per tuning image (experiments/loso_library_pool.py --point=-fa2 cuts the same files)
[ -e $w/tta8-join-fa2/model.safetensors ] || $X tune-segmenter --model $model --tta 8 \
  --joins -1 0 2 4 --threads "$threads" "$@" --max-false-alarms 2 --out $w/tta8-join-fa2
echo "fold $fold (${held[*]}) done: $w"
