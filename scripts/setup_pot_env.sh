#!/usr/bin/env bash
# Create or refresh .venv-pot, the legacy POT environment: Python 3.11, openvino-dev 2023.3.0
# (the last release with POT), nncf 2.8.1, numpy<1.27, scipy<1.11, opencv-python<4.11, and
# this package installed editable with its [pot,test] extras.
#
# Idempotent: a stamp (hash of this script and pyproject.toml) skips pip when nothing changed
# and the environment still imports. Variables: POT_PYTHON (interpreter, default python3.11),
# POT_VENV (default <repo>/.venv-pot), POT_FORCE=1 (reinstall even if up to date).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${POT_VENV:-$ROOT/.venv-pot}"
PY="${POT_PYTHON:-python3.11}"
PINS=("openvino-dev==2023.3.0" "nncf==2.8.1" "numpy<1.27" "scipy<1.11" "opencv-python<4.11")

if [ ! -x "$VENV/bin/python" ]; then
    if ! command -v "$PY" >/dev/null 2>&1; then
        echo "error: $PY not found: POT (openvino-dev 2023.3) needs Python 3.8-3.11; set POT_PYTHON" >&2
        exit 2
    fi
    version="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    case "$version" in
        3.8|3.9|3.10|3.11) ;;
        *) echo "error: $PY is Python $version: POT (openvino-dev 2023.3) needs Python 3.8-3.11; set POT_PYTHON" >&2
           exit 2 ;;
    esac
    echo "creating $VENV with $PY (Python $version)"
    "$PY" -m venv "$VENV"
fi

stamp="$VENV/.synthcalib-pot-stamp"
want="$(cat "${BASH_SOURCE[0]}" "$ROOT/pyproject.toml" 2>/dev/null | sha256sum | cut -d' ' -f1)"
if [ "${POT_FORCE:-0}" != 1 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] \
    && "$VENV/bin/python" -c "import openvino.tools.pot, openvino_synthcalib.pot, pytest, onnx" >/dev/null 2>&1; then
    echo "$VENV is up to date"
    exit 0
fi

target="$ROOT"
if [ -f "$ROOT/pyproject.toml" ] || [ -f "$ROOT/setup.py" ]; then
    target="$ROOT[pot,test]"
fi
# onnx: the tests build an ONNX classifier (POT configs name .onnx models)
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" pytest "onnx==1.15.0" -e "$target"
"$VENV/bin/python" - <<'PY'
import openvino as ov, openvino.tools.pot, numpy, scipy, nncf  # noqa: E401,F401
print(f"legacy POT env ready: openvino {ov.__version__.split('-')[0]}, nncf {nncf.__version__}, "
      f"numpy {numpy.__version__}, scipy {scipy.__version__}")
PY
echo "$want" > "$stamp"
