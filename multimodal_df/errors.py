"""Errors a user can see. Each carries a one-line reason; CLIs print it instead of a traceback."""


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
