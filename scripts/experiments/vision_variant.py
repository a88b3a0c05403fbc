"""Experiment: the face branch retrained with some ``train`` / ``vision`` config keys changed (e.g.
``train.soft_real_prob=0.5``), scored on dev images and videos (../shared/data/dev: selection and reporting only,
never training) and by the quality-shift check on real test faces.

Trains the face model with the recipe's preset, data split, pseudo-fakes and decoders of a finished recipe run (same
cache), puts it in place of that run's face branch in a copy of its detector (the fusion is untouched, so read the
vision AUC columns, not the fused ones), runs ``evaluate`` on the dev images and videos, then
``quality_shift.py`` on the new detector.

Run: MDF_RUN=RUN MDF_DEV_CSV=dev.csv PYTHONPATH=scripts/experiments python scripts/experiments/vision_variant.py OUT
KEY=VALUE... [--seed S] (KEY a ``vision`` key, or SECTION.KEY such as ``train.soft_real_prob``). Compare two runs'
``OUT/dev/predictions.jsonl`` with ``paired_auc.py --key vision``.
"""

from __future__ import annotations

# This folder is not a package: the sibling scripts are found through sys.path (PYTHONPATH=scripts/experiments).
from audio_variant import RUN, dev_subset, swap_branch, variant_config
from quality_shift import main as quality_shift

from multimodal_df.evaluate import main as evaluate_main
from multimodal_df.training.run import run_training


def main(argv: list[str] | None = None) -> None:
    out, cfg = variant_config(argv, "vision", __doc__ or "")
    if not (out / "vision" / "config.json").exists():
        run_training(cfg, ["vision"], RUN / "manifests" / "faces.csv", out, RUN / "cache" / "faces", "cpu")
    dev = dev_subset(out, "dev_faces.csv", ("image", "video"))
    swap_branch(RUN / "detector", out / "vision", out / "detector", "vision")
    evaluate_main(["--checkpoint", str(out / "detector"), "--manifest", str(dev), "--out", str(out / "dev")])
    quality_shift([str(out / "detector")])


if __name__ == "__main__":
    main()
