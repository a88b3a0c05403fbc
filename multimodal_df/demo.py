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

from . import predict, train
from .fixtures import make_dataset

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def build_demo_model(run_dir: Path) -> Path:
    """Generate fixtures and train vision, audio and fusion with configs/tiny.yaml; returns the detector dir."""
    data = run_dir / "data"
    print(f"demo: generating synthetic training clips in {data}", file=sys.stderr)
    manifest = make_dataset(data, seed=1)
    code = train.main(
        ["--stage", "all", "--config", str(ROOT / "configs" / "tiny.yaml"), "--manifest", str(manifest), "--out", str(run_dir), "--cache-dir", str(run_dir / "cache"), "--no-progress"]
    )
    if code != 0:
        raise SystemExit(code)
    return run_dir / "detector"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m multimodal_df.demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", help="use this detector instead of the demo model")
    p.add_argument("--run-dir", default=str(ROOT / "runs" / "demo"))
    p.add_argument("--fixture-model", action="store_true", help="use (training once) the tiny fixture-trained demo model")
    p.add_argument("--retrain", action="store_true", help="rebuild the fixture demo model")
    p.add_argument("paths", nargs="*", help="files to score (default: examples/)")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    ckpt = args.checkpoint or (None if args.fixture_model else predict.default_checkpoint())
    if ckpt is None:
        run_dir = Path(args.run_dir)
        if args.retrain and run_dir.exists():
            shutil.rmtree(run_dir)
        ckpt_path = run_dir / "detector"
        ckpt = str(ckpt_path if (ckpt_path / "config.json").exists() else build_demo_model(run_dir))
    paths = args.paths or [str(EXAMPLES)]
    print(f"demo: scoring {', '.join(paths)} with {ckpt}", file=sys.stderr)
    return predict.main([*paths, "--checkpoint", ckpt])


if __name__ == "__main__":
    sys.exit(main())
