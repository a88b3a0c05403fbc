"""Invisible DWT-DCT watermarks that open-source image generators embed by default.

Decoding is the invisible-watermark library's (``imwatermark``) method ``dwtDct``, vectorised here (the library
loops over blocks in Python; the tests check both give the same votes): the image's U channel (YUV) goes through
a Haar DWT, is cut into 4x4 blocks, and block number ``i`` (row-major) carries bit ``i mod L`` of an L-bit message;
the decoder averages the votes of all blocks of a bit.
Known messages:

* ``sd_v1``: Stable Diffusion v1 reference scripts, the bytes of ``StableDiffusionV1`` (136 bits).
* ``sd_v2``: Stable Diffusion 2.x reference scripts, the bytes of ``SDV2`` (32 bits).
* ``sdxl``: SDXL (Stability's generative-models, diffusers' ``StableDiffusionXLWatermarker``), the 48-bit
  message ``0xB3EC907BB19E``.
* ``flux``: FLUX.1 reference code (black-forest-labs), the message ``0x2AFE879CF52E`` given as
  ``bin(m)[2:]``, which drops its two leading zero bits: 46 bits.

The reference scripts flip RGB to BGR before encoding; diffusers encodes the RGB array as is, so both
channel orders are tried. The library decodes one message length per pass; here one pass asks for one
"bit" per block (length = number of blocks), and the votes are then regrouped for every known length,
which gives exactly the library's answer for each length at the cost of a single pass per channel order.

The mark does not survive JPEG re-encoding or resizing (measured: gone at JPEG quality 95), so a miss
means nothing. Even untouched, the encoder's rounding to uint8 leaves errors: a freshly marked 512x512
image decodes 85-89 % of the 136 SD v1 bits (measured), so one fixed "90 % of bits" rule would miss it
while being loose for the 32-bit SDV2 message. Each scheme therefore needs the smallest number of
matching bits that unmarked content (bits as fair coins) reaches with probability at most
:data:`FALSE_MATCH_P`, and never less than :data:`MIN_ACCURACY` of the bits: 102/136 (75 %) for SD v1,
30/32 (94 %) for SDV2, 41/48 (85 %) for SDXL, 39/46 (85 %) for FLUX.
"""

from __future__ import annotations

import importlib.util
import math
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from .report import WatermarkResult, WatermarkScore

FALSE_MATCH_P = 1e-6
"""Chance that one scheme matches unmarked content, per channel order and image."""
MIN_ACCURACY = 0.75
IMAGE_BLOCK_BUDGET = 8192
"""4x4 DWT blocks decoded per image (about 0.5 megapixel); each bit of the 136-bit message still gets
about 60 votes. Only whole top rows are cropped off, which keeps every block's bit index."""
FRAME_BLOCK_BUDGET = 4096
MAX_FRAMES = 3
MIN_PIXELS = 256 * 256
"""The library refuses smaller images."""
_BLOCK = 4
"""Side of the DWT blocks (the library's default ``block``)."""
_U_SCALE = 36.0
"""Quantisation step of the U channel (the library's ``scales[1]``; Y is not marked, ``scales[0] == 0``)."""


@dataclass(frozen=True)
class WatermarkScheme:
    name: str
    bits: tuple[int, ...]


def _bytes_bits(message: bytes) -> tuple[int, ...]:
    return tuple(int(b) for b in np.unpackbits(np.frombuffer(message, dtype=np.uint8)))


def _int_bits(message: int) -> tuple[int, ...]:
    # Same as the generators' own `[int(bit) for bit in bin(message)[2:]]`, leading zeros dropped.
    return tuple(int(c) for c in bin(message)[2:])


SCHEMES: tuple[WatermarkScheme, ...] = (
    WatermarkScheme("sd_v1", _bytes_bits(b"StableDiffusionV1")),
    WatermarkScheme("sd_v2", _bytes_bits(b"SDV2")),
    WatermarkScheme("sdxl", _int_bits(0xB3EC907BB19E)),
    WatermarkScheme("flux", _int_bits(0x2AFE879CF52E)),
)


def chance_of_matches(n_bits: int, k: int) -> float:
    """P(at least ``k`` of ``n_bits`` fair coin flips match): how likely unmarked content scores this well."""
    return sum(math.comb(n_bits, i) for i in range(k, n_bits + 1)) / 2.0**n_bits


@cache
def required_matches(n_bits: int) -> int:
    """Fewest matching bits that count as a detection for an ``n_bits`` message."""
    k = math.ceil(MIN_ACCURACY * n_bits)
    while k < n_bits and chance_of_matches(n_bits, k) > FALSE_MATCH_P:
        k += 1
    return k


def _dwt_dct_decoder() -> Any:
    """invisible-watermark's ``dwtDct`` decoder class (``imwatermark.maxDct.EmbedMaxDct``).

    ``import imwatermark`` imports PyTorch (for its RivaGAN scheme, which is never used here): 2-4 s on a small
    CPU, which a detector on the ONNX runtime otherwise never pays. So unless the package is already imported,
    the one module used (NumPy, OpenCV and PyWavelets only) is loaded from the installed package's own file,
    without running the package's ``__init__``. Raises ImportError when invisible-watermark is not installed.
    """
    if "imwatermark" in sys.modules:
        if sys.modules["imwatermark"] is None:  # blocked, as a None entry blocks an import
            raise ImportError("import of imwatermark halted; None in sys.modules")
        from imwatermark.maxDct import EmbedMaxDct

        return EmbedMaxDct
    return _dwt_dct_from_file()


@cache
def _dwt_dct_from_file() -> Any:
    """``EmbedMaxDct`` from the installed ``imwatermark/maxDct.py``, loaded once without the package's ``__init__``."""
    spec = importlib.util.find_spec("imwatermark")  # finds the package without executing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("invisible-watermark is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "maxDct.py"
    mod_spec = importlib.util.spec_from_file_location("multimodal_df._imwatermark_maxdct", path)
    if mod_spec is None or mod_spec.loader is None:
        raise ImportError(f"invisible-watermark: cannot load {path}")
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module.EmbedMaxDct


def _block_votes(bgr: np.ndarray) -> np.ndarray:
    """0/1 vote of every 4x4 DWT block, row-major. Shape [B].

    What ``imwatermark.WatermarkDecoder("bits", n_blocks).decode(bgr, "dwtDct")`` computes (the library's
    ``EmbedMaxDct.decode``, see :func:`_library_block_votes`), vectorised: the library visits the blocks in a Python
    loop (about 60 ms per 1080p frame and channel order, most of the provenance stage), while the same arithmetic on
    all blocks at once takes a few milliseconds. Its steps: the U channel of ``cv2``'s BGR -> YUV conversion, cut to
    a multiple of 4 pixels; the approximation band of PyWavelets' Haar DWT; in each 4x4 block of it, the largest
    magnitude among the 15 coefficients after the first (the first such on ties, as ``np.argmax``); the vote is 1
    when that magnitude modulo 36 exceeds 18. The same float64 values and comparisons, so the same votes."""
    import cv2
    import pywt

    rows, cols = bgr.shape[:2]
    if rows * cols < MIN_PIXELS:
        raise RuntimeError("image too small, should be larger than 256x256")  # as WatermarkDecoder refuses it
    _dwt_dct_decoder()  # the library must be there, as before: its absence is reported, not worked around
    yuv = cv2.cvtColor(np.ascontiguousarray(bgr), cv2.COLOR_BGR2YUV)
    approx = pywt.dwt2(yuv[: rows // 4 * 4, : cols // 4 * 4, 1], "haar")[0]
    br, bc = approx.shape[0] // _BLOCK, approx.shape[1] // _BLOCK
    blocks = approx[: br * _BLOCK, : bc * _BLOCK].reshape(br, _BLOCK, bc, _BLOCK).swapaxes(1, 2)
    magnitude = np.abs(blocks.reshape(br * bc, _BLOCK * _BLOCK)[:, 1:])
    peak = np.take_along_axis(magnitude, np.argmax(magnitude, axis=1)[:, None], axis=1)[:, 0]
    with np.errstate(all="ignore"):
        return (peak % _U_SCALE > 0.5 * _U_SCALE).astype(np.float64)


def _library_block_votes(bgr: np.ndarray) -> np.ndarray:
    """:func:`_block_votes` by the library's own decoder class (its per-block Python loop): the reference the
    vectorised votes are tested against."""
    rows, cols = bgr.shape[:2]
    if rows * cols < MIN_PIXELS:
        raise RuntimeError("image too small, should be larger than 256x256")
    n_blocks = ((rows // 4 * 2) // 4) * ((cols // 4 * 2) // 4)
    with np.errstate(all="ignore"):
        votes = _dwt_dct_decoder()(watermarks=[], wmLen=n_blocks).decode(np.ascontiguousarray(bgr))
    if len(votes) != n_blocks:
        raise RuntimeError("bits are not matched with watermark length")
    return np.asarray(votes, dtype=np.float64)


def rows_read(rows: int, cols: int, budget: int) -> int:
    """How many top rows of a ``rows`` x ``cols`` image the check reads: about ``budget`` blocks, whole rows (which
    keep every block's index). Lets a caller convert only those rows of a large image."""
    per_band = max(1, (cols // 4 * 2) // 4)  # blocks per 8 pixel rows
    bands = max(budget // per_band, -(-MIN_PIXELS // (8 * max(cols, 1))))
    return min(rows // 8 * 8, bands * 8)


def _crop_rows(img: np.ndarray, budget: int) -> np.ndarray:
    """Top rows of ``img`` holding about ``budget`` blocks (:func:`rows_read`)."""
    return img[: rows_read(img.shape[0], img.shape[1], budget)]


def _scores(votes: np.ndarray) -> dict[str, float]:
    """Bit accuracy of every scheme given per-block votes."""
    out: dict[str, float] = {}
    idx = np.arange(len(votes))
    for scheme in SCHEMES:
        n = len(scheme.bits)
        if len(votes) < n:
            continue
        sums = np.bincount(idx % n, weights=votes, minlength=n)
        counts = np.bincount(idx % n, minlength=n)
        # Same threshold as the library: mean vote * 255 > 127.
        bits = (sums / counts) * 255 > 127
        out[scheme.name] = float(np.mean(bits == np.asarray(scheme.bits, dtype=bool)))
    return out


def check_watermarks(
    images: list[np.ndarray], budget: int = IMAGE_BLOCK_BUDGET, frame_indices: list[int] | None = None
) -> WatermarkResult:
    """Look for the known marks in RGB uint8 images ([H, W, 3] each); never raises.

    ``frame_indices``: index of each image in the caller's frame array, reported with the scores.
    Images must be at the file's native resolution: resizing destroys the mark.
    """
    res = WatermarkResult(required={s.name: f"{required_matches(len(s.bits))}/{len(s.bits)}" for s in SCHEMES})
    usable: list[tuple[int | None, np.ndarray]] = []
    for k, img in enumerate(images):
        if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] * img.shape[1] < MIN_PIXELS:
            res.notes.append(f"image {img.shape} too small or not RGB for the watermark decoder")
            continue
        usable.append((frame_indices[k] if frame_indices is not None else None, img))
    if not usable:
        return res
    try:
        _dwt_dct_decoder()
    except ImportError:
        res.notes.append("invisible-watermark is not installed: watermarks not checked")
        return res
    best: dict[str, WatermarkScore] = {}
    for index, img in usable:
        rgb = _crop_rows(np.asarray(img, dtype=np.uint8), budget)
        try:
            for order, arr in (("bgr", rgb[:, :, ::-1]), ("rgb", rgb)):
                for name, acc in _scores(_block_votes(arr)).items():
                    n_bits = len(next(s.bits for s in SCHEMES if s.name == name))
                    matches = round(acc * n_bits)
                    if name not in best or acc > best[name].bit_accuracy:
                        best[name] = WatermarkScore(
                            name,
                            round(acc, 4),
                            n_bits,
                            order,
                            index,
                            chance=float(f"{chance_of_matches(n_bits, matches):.3g}"),
                            detected=matches >= required_matches(n_bits),
                        )
        except Exception as exc:
            res.notes.append(f"watermark decoder failed ({type(exc).__name__})")
            continue
        res.images_checked += 1
    res.checked = res.images_checked > 0
    res.scores = [best[s.name] for s in SCHEMES if s.name in best]
    return res
