"""multimodal_df: tell whether a video, its voice or a face image was made or altered by AI.

Every score in this package is P(fake); labels are ``REAL = 0`` and ``FAKE = 1``.
"""

__version__ = "0.1.0"

REAL = 0
FAKE = 1

__all__ = ["__version__", "REAL", "FAKE"]
