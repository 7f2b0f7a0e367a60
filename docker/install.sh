#!/bin/sh
# Install Genesis (with the extras given, e.g. '.[ops]') the way scripts/setup.sh does:
# `trackers` without its dependencies (it declares opencv-python, which would replace the
# headless contrib cv2), then exactly one OpenCV distribution.
set -eu
python -m pip install "$@"
python -m pip install --no-deps 'trackers==2.6.1'
others=$(python -m pip list --format=freeze 2>/dev/null | grep -iE '^opencv-(python|python-headless|contrib-python)==' | cut -d= -f1 || true)
if [ -n "$others" ]; then
  # shellcheck disable=SC2086
  python -m pip uninstall -y $others
  python -m pip install --force-reinstall --no-deps 'opencv-contrib-python-headless>=4.10,<5'
fi
python -c "import cv2; assert hasattr(cv2, 'FaceDetectorYN'), cv2.__file__"
