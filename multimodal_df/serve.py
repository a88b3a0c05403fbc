"""REST API and web page.

    python -m multimodal_df.serve --host 127.0.0.1 --port 8000 [--checkpoint DIR]

``GET /`` the web page; ``GET /health``; ``POST /v1/predict`` (multipart field ``file``) returns the JSON
record of ``predict --json`` (``?stream=true``: NDJSON, a line per chunk then the verdict, as ``predict --stream``).
``--runtime onnx`` runs the branch models on ONNX Runtime. See :mod:`multimodal_df.server.app` for how the server protects itself.

On a loopback address (the default) it answers requests for ``localhost``, ``127.0.0.1`` and ``::1`` only, without
an API key. Any other address needs an API key (``--api-key`` or, better, ``$MULTIMODAL_DF_API_KEY``, which other
users cannot read from the process list) and the names clients use (``--allowed-host``).
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import os
import sys
import warnings
from typing import TYPE_CHECKING

from .errors import CheckpointError, ConfigError, ExitCode, run_command
from .server.settings import API_KEY_ENV, LOOPBACK_HOSTS, SETTINGS_ENV, ServerSettings

if TYPE_CHECKING:
    from .pipeline.detector import Detector


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.serve", description="Serve the REST API and the web page."
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--checkpoint", help="detector directory (default: $MULTIMODAL_DF_CHECKPOINT, else the shipped model)"
    )
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--runtime",
        default="torch",
        choices=["torch", "onnx"],
        help="what runs the vision and audio models: PyTorch, or ONNX Runtime (see predict --help)",
    )
    p.add_argument("--max-upload-mb", type=float, default=200.0)
    p.add_argument("--max-waiting", type=int, default=8, help="requests allowed to wait for the model; more get 503")
    p.add_argument(
        "--api-key",
        help="require this key (header 'Authorization: Bearer KEY' or 'X-API-Key: KEY') for the API; default "
        "$MULTIMODAL_DF_API_KEY. Required on a non-loopback --host",
    )
    p.add_argument(
        "--allowed-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a Host name clients use to reach the server (repeatable; loopback names are always allowed; '*' "
        "answers any name: only behind a proxy that checks it)",
    )
    p.add_argument("--upload-timeout", type=float, default=300.0, help="seconds an upload may take in all")
    p.add_argument("--idle-timeout", type=float, default=30.0, help="seconds an upload may send nothing")
    p.add_argument("--analysis-timeout", type=float, default=300.0, help="seconds from upload to verdict")
    p.add_argument("--workers", type=int, default=1, help="processes, each with its own model (memory grows with each)")
    p.add_argument(
        "--max-connections",
        type=int,
        default=128,
        help="open connections per process; past it the HTTP server itself answers 503 (plain text)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    return run_command(lambda: _serve(args))


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def settings_from_args(args: argparse.Namespace) -> ServerSettings:
    """The server's settings; a :class:`ConfigError` for a combination that would be unsafe. ``checkpoint`` is
    left as given (empty for the default): resolving the default would import the models' libraries."""
    key = args.api_key or os.environ.get(API_KEY_ENV) or None
    if not is_loopback(args.host) and not key:
        raise ConfigError(
            f"listening on {args.host} lets other machines in: set an API key (${API_KEY_ENV} or --api-key), "
            "and name the hosts clients use with --allowed-host"
        )
    hosts = list(LOOPBACK_HOSTS) + list(args.allowed_host)
    if not is_loopback(args.host) and args.host not in ("0.0.0.0", "::"):
        hosts.append(args.host)  # clients that use the address itself
    for name, value in (("--upload-timeout", args.upload_timeout), ("--idle-timeout", args.idle_timeout)):
        if not value > 0:
            raise ConfigError(f"{name} must be positive")
    if not args.analysis_timeout > 0 or args.workers < 1 or args.max_waiting < 1:
        raise ConfigError("--analysis-timeout must be positive, --workers and --max-waiting at least 1")
    return ServerSettings(
        max_upload_mb=args.max_upload_mb,
        max_waiting=args.max_waiting,
        checkpoint=args.checkpoint or "",
        api_key=key,
        allowed_hosts=tuple(hosts),
        upload_timeout_s=args.upload_timeout,
        idle_timeout_s=args.idle_timeout,
        analysis_timeout_s=args.analysis_timeout,
    )


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_from_args(args)
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}/"
    common = {"host": args.host, "port": args.port, "log_level": "warning", "limit_concurrency": args.max_connections}
    if args.workers == 1:
        from .pipeline.checkpoint import default_checkpoint
        from .predict import load_checked
        from .server.app import create_app

        detector = load_checked(args.checkpoint, args.device, args.runtime)
        settings.checkpoint = args.checkpoint or default_checkpoint() or ""
        app = create_app(detector, settings=settings)
        print(f"serving on {where} (API docs at /docs)", file=sys.stderr)
        uvicorn.run(app, **common)
        return ExitCode.OK
    # Several processes, each loading the model itself from the factory below; this one only supervises them and
    # never imports the models' libraries. The settings travel in the environment, the key apart from them.
    # Loading once here also exports the ONNX graphs into the cache, if needed, before the workers look for them.
    problem = _load_problem(args.checkpoint, args.device, args.runtime)
    if problem:
        raise CheckpointError(problem)
    fields = {k: v for k, v in dataclasses.asdict(settings).items() if k != "api_key"}
    os.environ[SETTINGS_ENV] = json.dumps({"settings": fields, "device": args.device, "runtime": args.runtime})
    if settings.api_key:
        os.environ[API_KEY_ENV] = settings.api_key
    print(f"serving on {where} with {args.workers} worker processes (API docs at /docs)", file=sys.stderr)
    uvicorn.run("multimodal_df.server.app:app_from_env", factory=True, workers=args.workers, **common)
    return ExitCode.OK


def _load_problem(checkpoint: str | None, device: str, runtime: str = "torch") -> str | None:
    """Why the checkpoint cannot be loaded (None when it can), found by loading it once in a short-lived process:
    fail here with one clear line rather than in every worker."""
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(_try_load, (checkpoint, device, runtime))


def _try_load(checkpoint: str | None, device: str, runtime: str = "torch") -> str | None:
    from .predict import load_checked

    try:
        detector: Detector = load_checked(checkpoint, device, runtime)
    except CheckpointError as exc:
        return str(exc)
    del detector
    return None


if __name__ == "__main__":
    sys.exit(main())
