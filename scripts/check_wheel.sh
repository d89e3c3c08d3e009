#!/usr/bin/env bash
# Build the wheel from this checkout, install it into a fresh virtual environment and run the
# main job (the demo on the packaged generator and classifier) from a folder outside the checkout.
# Proves that an installed package carries its shipped models. Used by .ci/run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$WORK/dist" "$ROOT"
wheel="$(ls "$WORK"/dist/openvino_synthcalib-*.whl)"
# grep without -q reads all of unzip's output: with -q it may exit first, and unzip's SIGPIPE then
# fails the pipeline under pipefail even though the file is there.
for name in cifar10/cifar10_student imagenet/imagenet_student; do
    unzip -l "$wheel" | grep "openvino_synthcalib/data/$name.bin" >/dev/null \
        || { echo "error: $wheel does not contain the shipped generator $name" >&2; exit 1; }
done
"$PYTHON" -m venv "$WORK/venv"
"$WORK/venv/bin/python" -m pip install --quiet --disable-pip-version-check "openvino==2026.4.1" "nncf==3.4.0" "$wheel"
cd "$WORK"  # not the checkout: only the installed package can be imported
"$WORK/venv/bin/python" -m openvino_synthcalib.demo --num-samples 100 --held-out 200 --out "$WORK/demo"
"$WORK/venv/bin/synthcalib" info cifar10 | grep "num_classes: 10"
"$WORK/venv/bin/synthcalib" info imagenet | grep "num_classes: 1000"
test -s "$WORK/demo/classifier_int8.xml" && test -s "$WORK/demo/classifier_int8.bin"
echo "wheel check passed: $(basename "$wheel")"
