#!/usr/bin/env bash
# Generator table (issue 5): teacher vs shipped student from ONE evaluation run (FID, KID, class
# consistency, parameters, IR size, images/s), plus sample grids of both for the same seed.
#   bash benchmarks/generator_quality.sh            # 10k generated vs 10k real (NUM=2000 for a quick look)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
SHARED=${SYNTHCALIB_SHARED:-../shared}
STUDENT=${STUDENT:-generators/cifar10/cifar10_student.xml}
OUT=benchmarks/results
NUM=${NUM:-10000}
$PY -m openvino_synthcalib.train_generator evaluate --teacher "$SHARED/teachers/cifar10_cgan_teacher.onnx" \
  --student "$STUDENT" --reference "$SHARED/datasets/cifar10-jpeg/train" --num "$NUM" \
  --classifier "$SHARED/models/cifar10/resnet56.onnx" --out runs/generator-quality --threads 2 --no-progress
cp runs/generator-quality/results.json "$OUT/generator_quality.json"
{ echo "# Generator quality: teacher vs shipped student (one evaluation run)"; echo
  echo "Command: \`bash benchmarks/generator_quality.sh\` (NUM=$NUM)"; echo
  cat runs/generator-quality/results.md; } > "$OUT/generator_quality.md"
for who in teacher student; do
  if [[ $who == teacher ]]; then src="generator:$SHARED/teachers/cifar10_cgan_teacher.onnx"; else src="generator:$STUDENT"; fi
  $PY -m openvino_synthcalib generate --source "$src" --num-classes 10 -n 100 --seed 0 --out "runs/grid-$who" >/dev/null
  cp "runs/grid-$who/grid.png" "$OUT/grid_$who.png"
done
echo "wrote $OUT/generator_quality.{json,md} and $OUT/grid_{teacher,student}.png"
