#!/usr/bin/env bash
# Distil the shipped CIFAR-10 student (generators/cifar10/) from the shared cGAN teacher, on CPU.
# Exact commands used; every step is resumable. Needs the [train] extra (PyTorch) and ../shared.
#   bash benchmarks/train_cifar10_generator.sh [sample|train|resume|export|evaluate|all]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SYNTHCALIB_SHARED:-../shared}
TEACHER=$SHARED/teachers/cifar10_cgan_teacher.onnx
SET=runs/teacher-set-cifar10
RUN=${RUN:-runs/00000-cifar10-student}
CLASSES=airplane,automobile,bird,cat,deer,dog,frog,horse,ship,truck
TG="$PY -m openvino_synthcalib.train_generator"
TRAIN_ARGS=(--data "$SET" --runs-dir runs --name cifar10-student
  --g-channels 128,128,96,64 --g-blocks 1 --d-channels 32,64,128 --batch 64
  --lr-g 2e-4 --lr-d 2e-4 --beta1 0 --beta2 0.999
  --w-pixel 1 --w-feat 1 --w-adv 0.1 --adv-ramp 1000 --ema-decay 0.995
  --ckpt-every 200 --log-every 25 --image-every 200 --steps 20000 --threads 1 --no-progress)

step=${1:-all}
if [[ $step == sample || $step == all ]]; then
  # 5,000 images per class (50k), ~6 min at ~135 img/s on 2 cores; rerun to resume.
  $TG sample-teacher --teacher "$TEACHER" --out "$SET" --per-class 5000 --shard-size 1000 \
    --class-names "$CLASSES" --no-progress
fi
if [[ $step == train || $step == all ]]; then
  # MAX_MINUTES bounds this session (a checkpoint is written when it stops).
  $TG train "${TRAIN_ARGS[@]}" --max-minutes "${MAX_MINUTES:-105}"
fi
if [[ $step == resume ]]; then
  # Continue the run from its last checkpoint (same options; --steps / --max-minutes may change).
  $TG train "${TRAIN_ARGS[@]}" --resume "$RUN" --max-minutes "${MAX_MINUTES:-60}"
fi
if [[ $step == export || $step == all ]]; then
  $TG export --run "$RUN" --out generators/cifar10/cifar10_student.xml --bn-batches 40
fi
if [[ $step == evaluate || $step == all ]]; then
  # 10k generated (teacher and student, same z and classes) vs 10k real train images.
  $TG evaluate --teacher "$TEACHER" --student generators/cifar10/cifar10_student.xml \
    --reference "$SHARED/datasets/cifar10-jpeg/train" --num "${NUM:-10000}" \
    --classifier "$SHARED/models/cifar10/resnet56.onnx" --out "${EVAL_OUT:-runs/eval-cifar10-student}" \
    --threads 2 --no-progress
fi
