"""Train the shipped model from real media only: one command.

    python -m multimodal_df.recipe --data ../shared/data --out runs/shipped [--install]

See :mod:`multimodal_df.training.recipe` for what each stage does, and MODEL_CARD.md for the result.
"""

from __future__ import annotations

import argparse
import sys

from .errors import ExitCode, run_command


def build_parser() -> argparse.ArgumentParser:
    from .training.recipe import CONFIG, STAGES

    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.recipe", description="Train the shipped model from real media only."
    )
    p.add_argument(
        "--data", default="../shared/data", help="folder with faces/ and librispeech/ (default ../shared/data)"
    )
    p.add_argument("--out", default="runs/shipped", help="run directory")
    p.add_argument("--config", default=CONFIG, help=f"preset name or YAML file (default {CONFIG})")
    p.add_argument("--stages", default=",".join(STAGES), help=f"comma-separated subset of {','.join(STAGES)}")
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override, passed to every stage"
    )
    p.add_argument("--install", action="store_true", help="copy OUT/detector into the package as the shipped model")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument(
        "--audio-variants",
        default="mel,mel_wav2vec",
        help="audio branches to train and choose from: mel (log-mel CNN), mel_wav2vec (with a small wav2vec 2.0)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 done, 2 bad arguments / config / data, 3 training itself failed."""
    args = build_parser().parse_args(argv)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]

    def body() -> int:
        from .training.recipe import run_recipe

        times = run_recipe(
            args.data,
            args.out,
            args.config,
            stages,
            args.set,
            args.device,
            not args.no_progress,
            args.install,
            audio_variants=[v.strip() for v in args.audio_variants.split(",") if v.strip()],
        )
        total = sum(times.values()) / 60
        print(
            f"recipe: {', '.join(f'{k} {v:.0f} s' for k, v in times.items())}; total {total:.1f} min", file=sys.stderr
        )
        return ExitCode.OK

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
