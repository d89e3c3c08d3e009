#!/usr/bin/env bash
# The ImageNet generator's training grid (benchmarks/results/imagenet_training_grid/): the shipped run's
# options (benchmarks/train_imagenet_generator.sh) from scratch, same seed, each variant changing one
# thing, each for the same wall budget (MAX_MINUTES, default 11, on 2 shared CPU cores), then Lite0's INT8
# flips (NNCF defaults, 300 items; benchmarks/imagenet.py's measured split, 200 images x 6 views) against
# each checkpoint's step and training minutes.
# On a CPU shared with other jobs (load 10-12 on 2 cores) a wall budget buys a few dozen steps and
# different runs get different shares, so the committed grid fixes the steps instead (STEPS=60,
# MAX_MINUTES as a cap) and runs two variants at a time with THREADS=1 each (2 threads in all), so a
# pair shares the same contention:
#   STEPS=60 CKPT_EVERY=60 MAX_MINUTES=40 THREADS=1 bash benchmarks/imagenet_training_grid.sh train set &
#   STEPS=60 CKPT_EVERY=60 MAX_MINUTES=40 THREADS=1 bash benchmarks/imagenet_training_grid.sh train out; wait
# The committed grid (benchmarks/results/imagenet_training_grid/grid.md): base with the defaults above
# (2 threads, stopped by MAX_MINUTES=11 at step 72), set+out then rrc+combo as pairs to step 60, then
# base+set as a pair resumed to STEPS=120 and STEPS=240; curves with CURVE_EVERY 2 (base: 3 at 240,
# set: 4 at 240), calibration seeds 1 and 2 of the step-60 and step-120 exports with
#   python benchmarks/imagenet.py --models lite0 --generator runs/imagenet/curve/RUN/checkpoint-0000120.xml \
#     --sources generator-nncf --seeds 1 2 --no-speed --out benchmarks/results/imagenet_training_grid
#   bash benchmarks/imagenet_training_grid.sh train VARIANT   # base | set | out | rrc | combo
#   STEPS=120 bash benchmarks/imagenet_training_grid.sh resume VARIANT   # continue its latest run
#   bash benchmarks/imagenet_training_grid.sh curve VARIANT   # flips of its checkpoints (at nice NICE, default 5)
# Variants (options added on top of the shipped run's; later options win):
#   base   today's options (per-batch BatchNorm statistics, jitter 16 + flips)
#   set    --bn-set-momentum 0.1 (set-level statistics: moving averages of the batches' moments, DGH)
#   out    --w-out 0.1 (DGH's output-distribution stretching on the logits)
#   rrc    --rrc-scale 0.25 --jitter 0 (random resized crops as in ImageNet training instead of the roll)
#   combo  COMBO (default: all three)
#   setce  set-level statistics with ten times the cross-entropy weight (--w-ce 1.0): class learning as a later
#          phase, started from another run's weights with INIT=RUN_OR_CHECKPOINT (--init-from), e.g.
#          INIT=runs/grid/00001-set MAX_MINUTES=25 bash benchmarks/imagenet_training_grid.sh train setce
#          (CE=3.0: that weight instead, a run named setce-ce3.0)
#   setfdiv  setce plus the feature-diversity loss (--w-fdiv FDIV, default 25: images of one class from
#          different latents must differ in Lite0's pooled features). Session 12, from the shipped run's last
#          step, beside its control (the same without the loss), one thread each:
#          FDIV=25 INIT=runs/grid/00005-setce THREADS=1 MAX_MINUTES=60 bash benchmarks/imagenet_training_grid.sh train setfdiv
#          INIT=runs/grid/00005-setce THREADS=1 MAX_MINUTES=58 bash benchmarks/imagenet_training_grid.sh train setce
#          then CURVE_EVERY=6 ... curve setce / setfdiv
#   setrrc  setce with random resized crops (--rrc-scale RRC, default 0.08 as torchvision's ImageNet training,
#          --jitter 0): Lite0's BatchNorm statistics were collected on such crops, so whole generator images
#          matched through crops sit nearer the evaluation framing. Session 13, from the shipped run's last step:
#          INIT=runs/grid/00005-setce THREADS=1 MAX_MINUTES=60 bash benchmarks/imagenet_training_grid.sh train setrrc
#   setout  setce with DGH's output stretching (--w-out WOUT, default 0.1): the range swap puts the excess in the
#          7x7 stage and the pooled features, the layers after the last BatchNorm that no statistic reaches.
#          Session 13, beside setrrc:
#          INIT=runs/grid/00005-setce THREADS=1 MAX_MINUTES=50 bash benchmarks/imagenet_training_grid.sh train setout
#   setrel  setce with the statistics loss in relative units (--bn-units relative: each channel's difference in
#          its running deviation, so Lite0's last-stage depthwise layers, whose variances are ~1e-4 of the
#          expansion layers', count) and --w-bn WBN (default 14: the weight at which its gradient norm on the
#          shipped step's weights equals the absolute loss's, 7.6 against 109 per unit). Session 13:
#          INIT=runs/grid/00005-setce THREADS=1 MAX_MINUTES=70 bash benchmarks/imagenet_training_grid.sh train setrel
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SYNTHCALIB_SHARED:-../shared}
RUNS=${RUNS:-runs/grid}
OUT=${OUT:-benchmarks/results/imagenet_training_grid}
TG="$PY -m openvino_synthcalib.train_generator"
source benchmarks/imagenet_method_args.sh
TRAIN_ARGS=("${METHOD_ARGS[@]}"
  --steps "${STEPS:-100000}" --ckpt-every "${CKPT_EVERY:-60}" --keep-checkpoints 0 --log-every 10 --image-every 100
  --threads "${THREADS:-2}" --runs-dir "$RUNS" --no-progress --max-minutes "${MAX_MINUTES:-11}")
variant=${2:?variant: base | set | out | rrc | combo | setce | setfdiv | setrrc | setout | setrel}
# setce with another weight (CE=3.0) is its own run, named setce-ce3.0
name=$variant${CE:+-ce$CE}
case $variant in
  base) EXTRA=() ;;
  set) EXTRA=(--bn-set-momentum 0.1) ;;
  out) EXTRA=(--w-out 0.1) ;;
  rrc) EXTRA=(--rrc-scale 0.25 --jitter 0) ;;
  combo) read -r -a EXTRA <<<"${COMBO:---bn-set-momentum 0.1 --w-out 0.1 --rrc-scale 0.25 --jitter 0}" ;;
  setce) EXTRA=(--bn-set-momentum 0.1 --w-ce "${CE:-1.0}") ;;
  setfdiv) EXTRA=(--bn-set-momentum 0.1 --w-ce "${CE:-1.0}" --w-fdiv "${FDIV:-25}") ;;
  setout) EXTRA=(--bn-set-momentum 0.1 --w-ce "${CE:-1.0}" --w-out "${WOUT:-0.1}") ;;
  setrel) EXTRA=(--bn-set-momentum 0.1 --w-ce "${CE:-1.0}" --bn-units relative --w-bn "${WBN:-14}") ;;
  setrrc) EXTRA=(--bn-set-momentum 0.1 --w-ce "${CE:-1.0}" --rrc-scale "${RRC:-0.08}" --jitter 0) ;;
  *) echo "unknown variant $variant" >&2; exit 2 ;;
esac
case $1 in
  train) $TG train "${TRAIN_ARGS[@]}" "${EXTRA[@]}" ${INIT:+--init-from "$INIT"} --name "$name" ;;
  resume) $TG train "${TRAIN_ARGS[@]}" "${EXTRA[@]}" --name "$name" --resume latest ;;
  curve)
    run=$(ls -d "$RUNS"/*-"$name" | tail -1)
    nice -n "${NICE:-5}" $PY benchmarks/imagenet.py --curve "$run" --curve-every "${CURVE_EVERY:-2}" --out "$OUT" ;;
  *) echo "usage: $0 train|resume|curve VARIANT" >&2; exit 2 ;;
esac
