"""The server's settings, apart from the application so that a supervising process (``serve --workers N``) can
read them without importing the models' libraries."""

from __future__ import annotations

import dataclasses

LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
API_KEY_ENV = "MULTIMODAL_DF_API_KEY"
SETTINGS_ENV = "MULTIMODAL_DF_SERVER"
"""Worker processes (``serve --workers N``) read their settings from this variable (JSON; the API key comes from
:data:`API_KEY_ENV`, never the command line of a child process)."""


@dataclasses.dataclass
class ServerSettings:
    """How the server protects itself. Sizes in MB, times in seconds."""

    max_upload_mb: float = 200.0
    max_waiting: int = 8
    """Requests allowed between upload and answer (the one being analysed included); more get 503."""
    tmp_dir: str | None = None
    """Where uploads are streamed (the system's temporary folder by default)."""
    checkpoint: str = ""
    """Shown by ``/health`` (its folder name only)."""
    api_key: str | None = None
    """When set, the API needs it (see :mod:`multimodal_df.server.app`)."""
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    """``Host`` names answered (without port); ``"*"`` answers any (only behind a proxy that checks them)."""
    upload_timeout_s: float = 300.0
    """The whole body must arrive within this: 200 MB at 5.6 Mbit/s."""
    idle_timeout_s: float = 30.0
    """No byte of the body for this long ends the upload."""
    analysis_timeout_s: float = 300.0
    """From the end of the upload to the verdict, waiting for the model included."""
