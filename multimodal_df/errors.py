"""Errors a user can see, and exit statuses. Each error carries a one-line reason; commands print it instead of a traceback."""

from __future__ import annotations

from collections.abc import Callable


def one_line(text: object, limit: int = 300) -> str:
    """``str(text)`` on one line (runs of whitespace, newlines included, folded to one space), at most ``limit`` characters."""
    return " ".join(str(text).split())[:limit]


class MediaError(Exception):
    """A file that cannot be analysed: missing, empty, corrupt, wrong type, too short, too large."""

    def __init__(self, reason: str) -> None:
        # Reasons are shown on one line per file, so newlines from FFmpeg messages are folded.
        super().__init__(" ".join(str(reason).split()))

    @property
    def reason(self) -> str:
        return str(self)


class ConfigError(ValueError):
    """A configuration file or checkpoint config that does not match the expected schema."""


class CheckpointError(RuntimeError):
    """A checkpoint directory that is missing files or was written by an incompatible version."""


class ExitCode:
    """Exit statuses shared by every command."""

    OK = 0
    """Every input was handled (scored, trained, written)."""
    INPUT_ERRORS = 1
    """Some inputs could not be analysed; each has its own error line and the rest were handled."""
    USAGE = 2
    """Bad arguments, config or checkpoint: nothing was attempted."""
    FAILURE = 3
    """The process itself failed (an internal error, out of memory, a broken install)."""
    INTERRUPTED = 130


def run_command(main: Callable[[], int]) -> int:
    """Run a command's body and turn what escapes it into one line on stderr and an exit status:
    config/checkpoint errors are usage errors (2), anything unexpected is a failure of the process (3),
    never a traceback. Set ``MULTIMODAL_DF_TRACEBACK=1`` to see the traceback of an internal error."""
    import os
    import sys
    import traceback

    try:
        return int(main() or 0)
    except (ConfigError, CheckpointError) as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return ExitCode.USAGE
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as exc:
        if os.environ.get("MULTIMODAL_DF_TRACEBACK") == "1":
            traceback.print_exc()
        print(f"error: internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}", file=sys.stderr)
        return ExitCode.FAILURE
