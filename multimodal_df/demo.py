"""The quick-start job: score the bundled example clips.

    python -m multimodal_df.demo [--checkpoint DIR] [--retrain]

Without ``--checkpoint`` it uses the shipped model (``multimodal_df/shipped/``, see MODEL_CARD.md).
``--fixture-model`` instead trains (once) a tiny detector on synthetic fixtures into ``runs/demo``
(about a minute on 2 CPU cores): it knows only the fixtures' artificial artifacts, and shows the
training machinery working end to end.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import warnings
from pathlib import Path

from .errors import ExitCode, run_command

EXAMPLES = Path(__file__).resolve().parent / "examples"
"""The bundled example clips (package data)."""


def build_demo_model(run_dir: Path) -> Path:
    """Generate fixtures and train vision, audio and fusion with the ``tiny`` preset; returns the detector dir."""
    from .config import load_config
    from .testing.fixtures import make_dataset
    from .training.run import run_training

    data = run_dir / "data"
    print(f"demo: generating synthetic training clips in {data}", file=sys.stderr)
    manifest = make_dataset(data, seed=1)
    cfg = load_config("tiny")
    cfg.train.progress = False
    return run_training(cfg, ["vision", "audio", "fusion"], manifest, run_dir, run_dir / "cache")["fusion"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m multimodal_df.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="use this detector instead of the demo model")
    p.add_argument("--run-dir", default="runs/demo", help="where the fixture model is trained (default runs/demo)")
    p.add_argument(
        "--fixture-model", action="store_true", help="use (training once) the tiny fixture-trained demo model"
    )
    p.add_argument("--retrain", action="store_true", help="rebuild the fixture demo model")
    p.add_argument("paths", nargs="*", help="files to score (default: examples/)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    return run_command(lambda: _demo(args))


def _demo(args: argparse.Namespace) -> int:
    from .media.sniff import iter_inputs
    from .pipeline.checkpoint import default_checkpoint, load
    from .pipeline.outputs import Prediction

    ckpt = args.checkpoint or (None if args.fixture_model else default_checkpoint())
    if ckpt is None:
        run_dir = Path(args.run_dir)
        if args.retrain and run_dir.exists():
            shutil.rmtree(run_dir)
        ckpt_path = run_dir / "detector"
        ckpt = str(ckpt_path if (ckpt_path / "config.json").exists() else build_demo_model(run_dir))
    paths = args.paths or [str(EXAMPLES)]
    print(f"demo: scoring {', '.join(paths)} with {ckpt}", file=sys.stderr)
    detector = load(ckpt)
    failed = False
    for path, err in iter_inputs(paths):
        pred = Prediction(path=path, error=err) if err else detector.predict(path)
        failed |= pred.error is not None
        print(pred.to_text(), flush=True)
    return ExitCode.INPUT_ERRORS if failed else ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
