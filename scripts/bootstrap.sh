#!/usr/bin/env bash
# Everything a fresh Debian machine with Python 3.11 needs to run afx: ffmpeg and chromium (for the shader tests)
# from Debian, a virtualenv in .venv with torch 2.14.1 / torchvision 0.29.1 and the project (editable, with test
# extras). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

if ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  echo "bootstrap: installing ffmpeg from Debian"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq ffmpeg >/dev/null
fi

# tests/test_export.py and `afx bench` draw exported shaders in headless Chromium (WebGL2 on SwiftShader: no GPU
# needed), driven over its DevTools pipe (no Python package); AFX_BROWSER=0 skips this (those tests then skip).
if [ "${AFX_BROWSER:-1}" != "0" ] && ! command -v chromium >/dev/null 2>&1; then
  echo "bootstrap: installing chromium from Debian (headless WebGL for the shader parity test; AFX_BROWSER=0 skips)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

"$PYTHON" -c 'import sys; assert sys.version_info >= (3, 11), "afx needs Python 3.11+"'
if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PYTHON" -m venv .venv
fi
if ! .venv/bin/python -c 'import torch, torchvision' >/dev/null 2>&1; then
  echo "bootstrap: installing torch 2.14.1 and torchvision 0.29.1"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q torch==2.14.1 torchvision==0.29.1
fi
.venv/bin/pip install -q -e '.[test,lint]'  # lint: mypy and ruff, which .ci/run runs after the tests
# tests/test_embeddings.py runs tiny YAMNet/VGGish stand-ins through TensorFlow in a child process; AFX_TEST_TF=0
# skips this (those tests then skip). tensorflow-cpu (a 275 MB wheel, ~30-70 s) instead of the [tfhub] extra's
# full tensorflow; tensorflow-hub and tf-keras without dependencies, because tf-keras names `tensorflow` and
# would pull the full wheel beside tensorflow-cpu (tensorflow-cpu already brings what both need).
if [ "${AFX_TEST_TF:-1}" != "0" ] && ! .venv/bin/python -c 'import importlib.util as u, sys
sys.exit(any(u.find_spec(m) is None for m in ("tensorflow", "tensorflow_hub", "tf_keras")))' >/dev/null 2>&1; then
  echo "bootstrap: installing tensorflow-cpu 2.21, tensorflow-hub and tf-keras for the embedding tests (AFX_TEST_TF=0 skips)"
  .venv/bin/pip install -q tensorflow-cpu==2.21.0
  .venv/bin/pip install -q --no-deps tensorflow-hub==0.16.1 tf-keras==2.21.0
fi
echo "bootstrap: ready ($(.venv/bin/afx --version 2>/dev/null || echo afx))"
