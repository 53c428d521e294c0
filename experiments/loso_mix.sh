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
#   experiments/loso_mix.sh FOLD [THREADS]
# Needs runs/seg/loso5-hard/foldI/train/model.safetensors and
# runs/loso-sources/fcn-bghard/foldI.safetensors. Resumable: finished steps are skipped.
# Outputs: runs/seg/loso5-mix/foldI/{ens,tta4-join-fa2,eval-SERIES}/
set -euo pipefail
cd "$(dirname "$0")/.."
fold=$1; threads=${2:-1}
X=.venv/bin/xdefect
G=${XDEFECT_GDXRAY:-../shared/data/gdxray}
E=${XDEFECT_EXTRA:-../shared/data/gdxray-extra}
export XDEFECT_PROGRESS=${XDEFECT_PROGRESS:-0}
w=runs/seg/loso5-mix/fold$fold
lib=runs/seg/loso5-hard/fold$fold/train/model.safetensors
fcn=runs/loso-sources/fcn-bghard/fold$fold.safetensors
held=$(.venv/bin/python - "$lib" "$G" "$E" <<'PY'
import sys
from xdefect import gdxray
from xdefect.checkpoint import read_card
seen = set(read_card(sys.argv[1])["lineage"][-1]["data_series"])
print(" ".join(sorted(s for r in sys.argv[2:] for s in gdxray.list_series(r)
                      if s not in seen and gdxray.load_ground_truth(r, s).annotated)))
PY
)
mkdir -p $w
[ -e $w/ens/model.safetensors ] || $X models ensemble "$lib" "$fcn" --out $w/ens
[ -e $w/tta4-join-fa2/model.safetensors ] || $X tune-segmenter --model $w/ens/model.safetensors \
  --tta 4 --joins -1 0 2 4 --max-false-alarms 2 --threads "$threads" --out $w/tta4-join-fa2
for s in $held; do
  root=$G; [ -d "$E/Castings/$s" ] && root=$E
  [ -e $w/eval-$s/metrics.json ] || $X evaluate --model $w/tta4-join-fa2/model.safetensors \
    --min-score -1 --gdxray "$root" --series "$s" --split all --no-overlays \
    --threads "$threads" --out $w/eval-$s
done
echo "fold $fold ($held) done: $w"
