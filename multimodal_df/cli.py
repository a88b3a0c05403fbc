"""The ``multimodal-df`` console command: one entry point for every ``python -m multimodal_df.<command>``.

multimodal-df predict clip.mp4 --json
multimodal-df train --stage all --config tiny --manifest data.csv
multimodal-df evaluate --checkpoint DIR --manifest test.csv --out report/
multimodal-df serve --port 8000
multimodal-df export CHECKPOINT --out DIR
"""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "predict": "score videos, audio files and face images",
    "train": "train each modality, then fuse",
    "evaluate": "ROC-AUC reports on a labelled manifest",
    "serve": "the REST API and web page",
    "export": "write ONNX graphs of a detector's branch models",
    "demo": "score the bundled examples",
    "recipe": "train the shipped model from real media only",
    "datasets": "turn a public dataset's layout into a manifest",
    "scan": "score many files with Ray (local or a cluster), resumable JSON lines",
    "sweep": "search training settings (Optuna), ranked by validation AUC",
}


def main(argv: list[str] | None = None) -> int:
    """Dispatch ``multimodal-df COMMAND ARGS...`` to that command's ``main(ARGS)``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help") or args[0] not in COMMANDS:
        width = max(map(len, COMMANDS))
        lines = "\n".join(f"  {name:<{width}}  {text}" for name, text in COMMANDS.items())
        print(
            f"usage: multimodal-df COMMAND [ARGS...]\n\ncommands:\n{lines}\n\n`multimodal-df COMMAND --help` for each one's options."
        )
        if args and args[0] not in ("-h", "--help"):
            print(f"\nerror: unknown command {args[0]!r}", file=sys.stderr)
            return 2
        return 0
    module = importlib.import_module(f"multimodal_df.{args[0]}")
    return int(module.main(args[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main())
