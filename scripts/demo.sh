#!/usr/bin/env bash
# Set everything up, then run the shipped detector (multimodal_df/shipped/, see MODEL_CARD.md)
# on the bundled example clips.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m multimodal_df.demo "$@"
