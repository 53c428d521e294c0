# Shared by experiments/loso_library.sh and experiments/loso_mix.sh (sourced, not run; the
# caller sets `fold` and `threads` and has cd'd to the project root). Defines X (the CLI),
# G and E (the two GDXray roots), the five leave-series-out folds of fcn_detector.py
# --kfold 5 (the fifteen annotated series of both roots sorted, fold I holds out every
# fifth from the I-th): `held` and `train`, the arrays of fold $fold, and
#   evaluate_held WORK MODEL [EVALUATE OPTION...]
# which evaluates every image of each held-out series once into WORK/eval-SERIES
# (skipped where metrics.json exists).
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

evaluate_held() {
  local w=$1 model=$2 s root
  shift 2
  for s in "${held[@]}"; do
    root=$G; [ -d "$E/Castings/$s" ] && root=$E
    [ -e "$w/eval-$s/metrics.json" ] || $X evaluate --model "$model" "$@" --gdxray "$root" \
      --series "$s" --split all --no-overlays --threads "$threads" --out "$w/eval-$s"
  done
}
