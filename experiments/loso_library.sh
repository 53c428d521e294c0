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
#   experiments/loso_library.sh FOLD [THREADS]
# Resumable: training continues from its last checkpoint, finished steps are skipped.
# Outputs: runs/seg/loso5-hard/foldI/{train,tta8-join,tta8-join-fa2,eval-SERIES}/
set -euo pipefail
cd "$(dirname "$0")/.."
fold=$1; threads=${2:-1}
X=.venv/bin/xdefect
G=${XDEFECT_GDXRAY:-../shared/data/gdxray}
E=${XDEFECT_EXTRA:-../shared/data/gdxray-extra}
export XDEFECT_PROGRESS=${XDEFECT_PROGRESS:-0}
all=$(.venv/bin/python - "$G" "$E" <<'PY'
import sys
from xdefect import gdxray
print(" ".join(sorted(s for r in sys.argv[1:] for s in gdxray.list_series(r)
                      if gdxray.load_ground_truth(r, s).annotated)))
PY
)
read -r -a names <<< "$all"
held=(); train=()
for i in "${!names[@]}"; do
  if [ $((i % 5)) -eq "$fold" ]; then held+=("${names[$i]}"); else train+=("${names[$i]}"); fi
done
w=runs/seg/loso5-hard/fold$fold
mkdir -p $w
if [ ! -e $w/train/model.safetensors ]; then
  resume=(); [ -e $w/train/last.safetensors ] && resume=(--resume)
  $X train-segmenter --out $w/train --gdxray "$G" "$E" --series "${train[@]}" --real \
    --steps 20000 --hard-rounds 2 --threads "$threads" --device cpu --seed 0 "${resume[@]}"
fi
[ -e $w/tta8-join/model.safetensors ] || $X tune-segmenter --model $w/train/model.safetensors \
  --tta 8 --joins -1 0 2 4 --threads "$threads" --out $w/tta8-join
for s in "${held[@]}"; do
  root=$G; [ -d "$E/Castings/$s" ] && root=$E
  [ -e $w/eval-$s/metrics.json ] || $X evaluate --model $w/tta8-join/model.safetensors \
    --gdxray "$root" --series "$s" --split all --no-overlays --threads "$threads" --out $w/eval-$s
done
[ -e $w/tta8-join-fa2/model.safetensors ] || $X tune-segmenter --model $w/train/model.safetensors \
  --tta 8 --joins -1 0 2 4 --max-false-alarms 2 --threads "$threads" --out $w/tta8-join-fa2
echo "fold $fold (${held[*]}) done: $w"
