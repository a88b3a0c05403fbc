"""REST API and web page.

    python -m multimodal_df.serve --host 127.0.0.1 --port 8000 [--checkpoint DIR]

``GET /`` the web page; ``GET /health``; ``POST /v1/predict`` (multipart field ``file``) returns the JSON
record of ``predict --json``. See :mod:`multimodal_df.server.app`.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from .errors import ExitCode, run_command


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.serve", description="Serve the REST API and the web page."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--checkpoint", help="detector directory (default: $MULTIMODAL_DF_CHECKPOINT, else the shipped model)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--max-upload-mb", type=float, default=200.0)
    p.add_argument("--max-waiting", type=int, default=8, help="requests allowed to wait for the model; more get 503")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    return run_command(lambda: _serve(args))


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .pipeline.checkpoint import default_checkpoint, load
    from .server.app import create_app

    detector = load(args.checkpoint, args.device)
    app = create_app(
        detector, args.max_upload_mb, args.max_waiting, checkpoint=args.checkpoint or default_checkpoint() or ""
    )
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return ExitCode.OK


if __name__ == "__main__":
    sys.exit(main())
