"""Media: what a file is (:mod:`.sniff`) and its decoded content (:mod:`.decode`): sampled RGB frames and a
16 kHz mono waveform. The only part of the package that touches FFmpeg (through PyAV) or reads images."""

from .decode import Clip, DenseFrames, DenseSpec, MediaInfo, decode
from .sniff import MEDIA_EXTENSIONS, iter_inputs, sniff_bytes

__all__ = ["MEDIA_EXTENSIONS", "Clip", "DenseFrames", "DenseSpec", "MediaInfo", "decode", "iter_inputs", "sniff_bytes"]
