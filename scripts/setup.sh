#!/usr/bin/env bash
# Create .venv and install Genesis into it.
#   scripts/setup.sh          runtime (embedded pipeline, CLI)
#   scripts/setup.sh --dev    + test and lint tools, the dlib, ultralytics and ops (Flower) extras
set -euo pipefail
cd "$(dirname "$0")/.."
DEV=0
for arg in "$@"; do
  case "$arg" in
    --dev) DEV=1 ;;
    *) echo "usage: scripts/setup.sh [--dev]" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=".venv/bin/python -m pip"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
$PIP install --quiet --upgrade pip
if [ "$DEV" = 1 ]; then
  # The ultralytics extra brings torch: pin the builds that lie on this machine's disk (local index), in the same
  # resolve, so pip neither downloads another torch nor takes PyPI's torchvision (which fails beside another torch).
  # ultralytics also pulls opencv-python (5.x), which overwrites cv2: the clean-up below removes it.
  # Byte-compiled at install (no --no-compile): where PYTHONDONTWRITEBYTECODE is set, as on the CI machines,
  # nothing is compiled later, and every process would compile what it imports again (+50 % CPU in the tests).
  $PIP install --quiet -e '.[dev,dlib,ultralytics,ops]' 'torch==2.14.1' 'torchvision==0.29.1'
else
  $PIP install --quiet -e .
fi
# roboflow `trackers` (ByteTrack) declares opencv-python; its real requirements are in pyproject.
$PIP install --quiet --no-deps 'trackers==2.6.1'
# Exactly one OpenCV distribution: remove any other that a dependency pulled in, then make
# sure the contrib headless build owns the cv2 package.
others=$($PIP list --format=freeze 2>/dev/null | grep -iE '^opencv-(python|python-headless|contrib-python)==' | cut -d= -f1 || true)
if [ -n "$others" ]; then
  # shellcheck disable=SC2086
  $PIP uninstall --quiet -y $others
  $PIP install --quiet --force-reinstall --no-deps 'opencv-contrib-python-headless>=4.10,<5'
fi
.venv/bin/python -c "import cv2; assert hasattr(cv2, 'FaceDetectorYN'), cv2.__file__" \
  || { echo "setup: cv2 is not the contrib build" >&2; exit 1; }
echo "setup: .venv ready ($(.venv/bin/python -c 'import cv2, onnxruntime; print("opencv", cv2.__version__, "onnxruntime", onnxruntime.__version__)'))"
