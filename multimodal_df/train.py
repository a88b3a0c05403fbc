"""Train each modality, then fuse.

    python -m multimodal_df.train --stage prepare --config tiny --manifest data.csv
    python -m multimodal_df.train --stage vision  --config tiny --manifest data.csv
    python -m multimodal_df.train --stage audio   --config tiny --manifest data.csv
    python -m multimodal_df.train --stage fusion  --config tiny --manifest data.csv
    python -m multimodal_df.train --stage all     --config tiny --manifest data.csv

``--config`` takes a preset name or a YAML file. Each branch stage writes a loadable single-branch
checkpoint to ``OUT/vision`` or ``OUT/audio`` (best epoch by validation AUC, calibrated on validation),
with ``log.jsonl`` (metrics per epoch) and ``state/`` (what ``--resume`` continues from). The fusion
stage reads both, trains fusion on the branches' outputs for the validation split (data the branches
did not train on) with k-fold cross-fitting, calibrates and picks the threshold on the out-of-fold
scores, and writes the full detector to ``OUT/detector``. The work is done by
:func:`multimodal_df.training.run.run_training`.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ExitCode, run_command


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.train", description="Train the vision or audio branch, then fusion."
    )
    p.add_argument(
        "--stage",
        required=True,
        choices=["prepare", "vision", "audio", "fusion", "all"],
        help="'all' runs prepare, vision, audio, fusion in order",
    )
    p.add_argument("--config", help="a preset name (tiny, default, lite0, shipped, ...) or a YAML file")
    p.add_argument("--manifest", help="CSV with path,label[,video_label,audio_label,split,category,group]")
    p.add_argument("--out", help="run directory (default: the config's out_dir)")
    p.add_argument("--cache-dir", help="prepared-data cache (default: the config's cache_dir)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda")
    p.add_argument(
        "--resume", action="store_true", help="continue a branch stage from its last complete epoch (OUT/<stage>/state)"
    )
    p.add_argument("--vision-checkpoint", help="fusion: vision checkpoint (default OUT/vision)")
    p.add_argument("--audio-checkpoint", help="fusion: audio checkpoint (default OUT/audio)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a config value, e.g. train.epochs=3"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 2 bad arguments / config / manifest / checkpoint, 3 training itself failed."""
    args = build_parser().parse_args(argv)

    def body() -> int:
        from .config import load_config, parse_override
        from .training.run import run_training

        cfg = load_config(args.config, dict(parse_override(s) for s in args.set))
        if args.no_progress:
            cfg.train.progress = False
        stages = ["vision", "audio", "fusion"] if args.stage == "all" else [args.stage]
        run_training(
            cfg,
            stages,
            args.manifest,
            args.out,
            args.cache_dir,
            args.device,
            args.resume,
            args.vision_checkpoint,
            args.audio_checkpoint,
        )
        return ExitCode.OK

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
