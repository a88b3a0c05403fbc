#!/usr/bin/env bash
# Set everything up, then run the detector on the bundled example clips.
# Until a trained model ships with the package, this first trains a small demo model on
# synthetic fixtures (about a minute on 2 CPU cores), so the verdicts show the pipeline working,
# not real-world accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m multimodal_df.demo "$@"
