#!/usr/bin/env bash
# Leave-series-out with two recipes averaged (issue 13, target 1): per fold, the
# library-recipe fold model (experiments/loso_library.sh) and the same fold's
# `fcn-bghard` model (experiments/loso_sources.py) as one ensemble (`xdefect models
# ensemble`: the mean of their probabilities), its settings and report threshold chosen
# by `xdefect tune-segmenter --tta 4 --joins -1 0 2 4 --max-false-alarms 2` on the tuning
# images of the twelve series both trained on, then every image of the held-out series
# evaluated once with every detection kept (--min-score -1; the report threshold cuts the
# same files when pooled). The two recipes fail on different castings (library: C0002,
# C0021; fcn-bghard: C0001, C0031, C0036).
#   experiments/loso_mix.sh FOLD [THREADS] [SECOND] [FIRST]
# SECOND: the other member, `fcn-bghard` (default), a seed N of the library recipe, `sN`
# (experiments/loso_library.sh FOLD THREADS N [FIRST]: FIRST's recipe drawn again), or `bg`
# (the backgrounds recipe, experiments/loso_backgrounds.sh).
# FIRST: the library-recipe member, `hard` (default: experiments/loso_library.sh FOLD, seed
# 0) or a registered architecture trained by that recipe (`segnet-lcn`:
# experiments/loso_library.sh FOLD THREADS 0 segnet-lcn).
# Needs runs/seg/loso5-hard[-FIRST]/foldI/train/model.safetensors and
# runs/loso-sources/fcn-bghard/foldI.safetensors (or
# runs/seg/loso5-hard[-FIRST]-sN/foldI/train/, runs/seg/loso5-bg/foldI/train/).
# Resumable: finished steps are skipped.
# Outputs: runs/seg/loso5-mix/foldI/ (runs/seg/loso5-seeds-sN/foldI/ for a seed;
# runs/seg/loso5-mix-FIRST-SECOND/foldI/ for another FIRST): {ens,tta4-join-fa2,eval-SERIES}/
set -euo pipefail
cd "$(dirname "$0")/.."
fold=$1; threads=${2:-1}; second=${3:-fcn-bghard}; first=${4:-hard}
. experiments/loso_folds.sh  # X, G, E, held, evaluate_held
lib_run=runs/seg/loso5-hard; [ "$first" = hard ] || lib_run=$lib_run-$first
lib=$lib_run/fold$fold/train/model.safetensors
case $second in
  fcn-bghard) w=runs/seg/loso5-mix/fold$fold
              other=runs/loso-sources/fcn-bghard/fold$fold.safetensors ;;
  s[0-9]*) w=runs/seg/loso5-seeds-$second/fold$fold
           other=$lib_run-$second/fold$fold/train/model.safetensors ;;
  bg) w=runs/seg/loso5-mix-$first-bg/fold$fold
      other=runs/seg/loso5-bg/fold$fold/train/model.safetensors ;;
  *) echo "loso_mix.sh: SECOND must be fcn-bghard, sN (a seed) or bg, not $second" >&2; exit 2 ;;
esac
[ "$first" = hard ] || w=runs/seg/loso5-mix-$first-$second/fold$fold
for m in "$lib" "$other"; do
  [ -e "$m" ] || { echo "loso_mix.sh: $m: train that fold model first" >&2; exit 2; }
done
mkdir -p $w
[ -e $w/ens/model.safetensors ] || $X models ensemble "$lib" "$other" --out $w/ens
[ -e $w/tta4-join-fa2/model.safetensors ] || $X tune-segmenter --model $w/ens/model.safetensors \
  --tta 4 --joins -1 0 2 4 --max-false-alarms 2 --threads "$threads" --out $w/tta4-join-fa2
evaluate_held $w $w/tta4-join-fa2/model.safetensors --min-score -1
echo "fold $fold (${held[*]}) done: $w"
