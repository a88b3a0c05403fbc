"""Experiment: the audio branch trained with per-band log-mel mean normalisation (``audio.mel_norm: band``) against
the recipe's (``global``), on dev voices (../shared/data/dev: selection and reporting only, never training).

The same as ``audio_variant.py OUT mel_norm=NORM`` (which trains, swaps the branch into a copy of the run's detector
and evaluates): kept so the command in the model card still runs.

Run: MDF_RUN=RUN MDF_DEV_CSV=dev.csv python scripts/experiments/audio_mel_norm.py OUT [band|global] [THREADS]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audio_variant import main as variant_main  # this folder is not a package: found through sys.path

if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    norm = sys.argv[2] if len(sys.argv) > 2 else "band"
    threads = sys.argv[3] if len(sys.argv) > 3 else "2"
    variant_main([sys.argv[1], f"mel_norm={norm}", "--threads", threads])
