"""multimodal_df: tell whether a video, its voice or a face image was made or altered by AI.

    >>> import multimodal_df as mdf
    >>> det = mdf.load()                         # the shipped model (or mdf.load("runs/x/detector", device="cuda"))
    >>> det = mdf.load(runtime="onnx")           # branch models on ONNX Runtime (graphs exported once if needed)
    >>> pred = det.predict("clip.mp4")           # a typed Prediction
    >>> pred.p_fake, pred.label, pred.to_json()
    >>> det.explain("clip.mp4").save("report/")  # heat maps, audio evidence, timeline, report.html
    >>> mdf.list_models()                        # face-model backbones; each owns its preprocessing

Every score in this package is P(fake); labels are ``REAL = 0`` and ``FAKE = 1``.
Heavy modules (torch, the models) are imported on first use, so ``import multimodal_df`` is instant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

REAL = 0
FAKE = 1

if TYPE_CHECKING:  # for type checkers and IDEs; at run time these load on first use
    from .config import Config, load_config  # noqa: F401
    from .pipeline.checkpoint import default_checkpoint  # noqa: F401
    from .pipeline.detector import Detector  # noqa: F401
    from .pipeline.onnx_runtime import load  # noqa: F401
    from .pipeline.outputs import Analysis, Prediction  # noqa: F401
    from .vision.backbones import list_models  # noqa: F401

# Public name -> module that defines it; resolved lazily (PEP 562).
_LAZY = {
    "load": "pipeline.onnx_runtime",  # checkpoint.load plus the runtime keyword
    "default_checkpoint": "pipeline.checkpoint",
    "Detector": "pipeline.detector",
    "Prediction": "pipeline.outputs",
    "Analysis": "pipeline.outputs",
    "list_models": "vision.backbones",
    "load_config": "config",
    "Config": "config",
}

__all__ = ["__version__", "REAL", "FAKE", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
