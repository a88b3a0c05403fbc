"""The detector: decode -> provenance -> faces / waveform -> branch outputs -> fusion -> calibrated P(fake) -> label.

    >>> import multimodal_df as mdf
    >>> det = mdf.load()                    # the shipped model; mdf.load("runs/x/detector", device="cuda")
    >>> pred = det.predict("clip.mp4")      # a Prediction; pred.to_json() is the documented record
    >>> det.explain("clip.mp4").save("report/")

One class runs every checkpoint: one branch (the output of ``train --stage vision`` or ``--stage
audio``) or both branches and a fusion model. Reading and writing checkpoints is
:mod:`multimodal_df.pipeline.checkpoint`'s job.

The branch models are PyTorch modules, or, for ``runtime="onnx"``, ONNX Runtime sessions with a NumPy fusion
model (:mod:`multimodal_df.pipeline.onnx_runtime`). This module imports PyTorch only when a detector of PyTorch
models needs it, so a detector on ONNX Runtime starts without it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..audio.features import frame_windows
from ..config import DecodeConfig, FaceConfig
from ..errors import CheckpointError, MediaError
from ..fusion.inputs import FusionInputs
from ..fusion.numpy_fusion import NumpyFusion
from ..fusion.sync import DENSE, SyncOutput, measure_mouth, sync_output
from ..media.decode import Clip, decode
from ..provenance import ProvenanceSettings, decide, inspect_provenance
from ..vision.crops import resize_square
from ..vision.faces import FaceDetector, FaceTrack
from .onnx_runtime import OnnxModel, RuntimeInfo
from .outputs import Analysis, AudioOutput, Prediction, VisionOutput, per_second_segments
from .schema import BranchMeta

if TYPE_CHECKING:
    import torch

    from ..audio.model import AudioModel
    from ..fusion.model import LateFusion
    from ..vision.model import VisionModel
    from .explain import Explanation
    from .stream import ChunkResult, StreamVerdict

SILENCE_PEAK = 1e-3
"""Audio whose peak amplitude stays below this (-60 dBFS) is treated as absent."""


ONNX_CPU_BATCH = 4
"""Largest batch the vision model runs at once on ONNX Runtime's CPU provider. Each crop's output is the same whatever
the batch (tested); the batch's activations are what the session must hold (EfficientNet-Lite0 with its tapped blocks: some
15 MB per 224 px crop), and the page faults of that much fresh memory for a batch of 32 cost more than the larger
batch saves: the vision stage of 32 crops took 0.51 s in batches of 32 and 0.34 s in batches of 4 (2 cores)."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    import torch

    device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(device)


class Detector:
    """Runs the whole pipeline on files. Build with :func:`multimodal_df.load` or from trained parts."""

    def __init__(
        self,
        decode_cfg: DecodeConfig,
        face_cfg: FaceConfig,
        vision: VisionModel | OnnxModel | None = None,
        audio: AudioModel | OnnxModel | None = None,
        fusion: LateFusion | NumpyFusion | None = None,
        vision_meta: BranchMeta | None = None,
        audio_meta: BranchMeta | None = None,
        fusion_meta: BranchMeta | None = None,
        training_data: dict[str, Any] | None = None,
        training_config: dict[str, Any] | None = None,
        device: str | torch.device = "cpu",
        batch_size: int = 32,
    ) -> None:
        if vision is None and audio is None:
            raise CheckpointError("a detector needs at least one branch model")
        if vision is not None and audio is not None and fusion is None:
            raise CheckpointError("a detector with both branches needs a fusion model (run train --stage fusion)")
        self.decode_cfg, self.face_cfg = decode_cfg, face_cfg
        self.vision, self.audio, self.fusion = vision, audio, fusion
        self.vision_meta = vision_meta or BranchMeta()
        self.audio_meta = audio_meta or BranchMeta()
        self.fusion_meta = fusion_meta or BranchMeta()
        self.training_data = training_data or {}
        """What the models were trained on (counts, generators), for the record."""
        self.training_config = training_config
        """The configuration the models were trained with, for the record; never used to build them."""
        self.batch_size = batch_size
        self.provenance = ProvenanceSettings()
        """The provenance stage (C2PA, AI-disclosure metadata, watermarks) that :meth:`analyze` runs before the
        models; ``detector.provenance.enabled = False`` skips it. It never changes P(fake); see
        :mod:`multimodal_df.provenance.policy` for how it may decide the label."""
        self.torch_free = all(m is None or isinstance(m, (OnnxModel, NumpyFusion)) for m in (vision, audio, fusion))
        """True when no model is a PyTorch module (the ONNX runtime): nothing here then imports PyTorch."""
        if self.torch_free:
            self.device: Any = str(device)
        else:
            import torch

            self.device = torch.device(device)
            for m in (vision, audio, fusion):
                if m is not None:
                    m.to(self.device).eval()
        self.faces = FaceDetector(face_cfg, vision.input_size if vision is not None else 224, str(self.device))
        self.branch_forward: dict[str, Callable[[Any], tuple[Any, Any]]] = {}
        """Replacements for the branch models' forwards by name ("vision", "audio"): ONNX Runtime sessions set by
        :func:`multimodal_df.pipeline.onnx_runtime.attach`. Empty: the PyTorch models run."""
        self.runtime = RuntimeInfo()
        """Which runtime runs the branch forwards (see :mod:`multimodal_df.pipeline.onnx_runtime`)."""

    # ------------------------------------------------------------------ persistence
    @classmethod
    def load(cls, directory: str | Path, device: str = "auto", runtime: str = "torch") -> Detector:
        """Rebuild a detector from a checkpoint directory (validated; no network, no pickle); ``runtime="onnx"``
        runs the branch models on ONNX Runtime (see :mod:`multimodal_df.pipeline.onnx_runtime`)."""
        from .checkpoint import load_detector

        if runtime == "torch":
            return load_detector(directory, device)
        from .onnx_runtime import load

        return load(directory, device, runtime)

    def save(self, directory: str | Path) -> Path:
        """Write this detector as a checkpoint directory (see :mod:`multimodal_df.pipeline.checkpoint`)."""
        from .checkpoint import save_detector

        return save_detector(self, directory)

    @property
    def threshold(self) -> float:
        """The decision threshold on the fused (or single-branch) calibrated P(fake)."""
        if self.fusion is not None:
            return self.fusion_meta.threshold
        return (self.vision_meta if self.vision is not None else self.audio_meta).threshold

    # ------------------------------------------------------------------ branches
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.torch_free:
            return contextlib.nullcontext()
        import torch

        return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.device.type == "cuda")

    def _no_grad(self) -> contextlib.AbstractContextManager[Any]:
        """PyTorch's inference mode around a branch or fusion forward; nothing on the ONNX runtime."""
        if self.torch_free:
            return contextlib.nullcontext()
        import torch

        return torch.inference_mode()

    def batch_for(self, branch: str) -> int:
        """Items per forward of ``branch`` ("vision" or "audio"): :attr:`batch_size`, and for the vision model on
        ONNX Runtime's CPU provider at most :data:`ONNX_CPU_BATCH`. The audio graph keeps its batches: its windows
        are few and small, and a batch of one window takes another kernel path (logits differ by about 1e-6)."""
        providers = self.runtime.providers.get(branch) or []
        if branch == "vision" and branch in self.branch_forward and providers[:1] == ["CPUExecutionProvider"]:
            return max(1, min(self.batch_size, ONNX_CPU_BATCH))
        return self.batch_size

    def _batched(
        self, model: Callable[..., Any], to_input: Callable[..., Any], items: np.ndarray, batch_size: int | None = None
    ) -> tuple[Any, Any]:
        """Run ``model`` (a branch model, or its :attr:`branch_forward`) over ``items`` in batches of ``batch_size``
        (default :attr:`batch_size`); returns (embeddings [N, D], logits [N]) on the CPU, float32: tensors, or NumPy
        arrays on the ONNX runtime."""
        step = batch_size or self.batch_size
        embs, logits = [], []
        for i in range(0, len(items), step):
            x = to_input(items[i : i + step], self.device)
            with self._autocast():
                e, lg = model(x)
            if isinstance(e, np.ndarray):
                embs.append(e.astype(np.float32, copy=False))
                logits.append(lg.astype(np.float32, copy=False))
            else:
                embs.append(e.float().cpu())
                logits.append(lg.float().cpu())
        if isinstance(embs[0], np.ndarray):
            return np.concatenate(embs), np.concatenate(logits)
        import torch

        return torch.cat(embs), torch.cat(logits)

    def pool_vision(self, logits: np.ndarray) -> float:
        """The vision model's own pooling (mean, max or top-k) of per-crop logits [K] into one clip logit."""
        if self.torch_free:
            return float(self.vision.pool(np.asarray(logits, np.float32)))  # type: ignore[union-attr]
        import torch

        return float(self.vision.pool(torch.from_numpy(np.asarray(logits)).float()))  # type: ignore[union-attr]

    def vision_output(self, crops: np.ndarray, times: np.ndarray, frames: int) -> VisionOutput | None:
        """Score face crops uint8 [K, S, S, 3] taken at ``times`` [K]; None when K == 0."""
        if self.vision is None or len(crops) == 0:
            return None
        with self._no_grad():
            emb, lg = self._batched(
                self.branch_forward.get("vision", self.vision), self.vision.to_input, crops, self.batch_for("vision")
            )
            pooled = float(self.vision.pool(lg))
            emb_mean, lg = _numpy(emb.mean(0)), _numpy(lg)
        cal = self.vision_meta.calibration
        return VisionOutput(
            pooled,
            float(cal(pooled)),
            emb_mean,
            lg,
            cal(lg),
            np.asarray(times, float),
            frames,
            len(crops),
        )

    def audio_output(self, waveform: np.ndarray | None, sample_rate: int = 16000) -> AudioOutput | None:
        """Score a mono waveform [T] window by window; None without audio."""
        if self.audio is None or waveform is None or waveform.size == 0:
            return None
        if sample_rate != self.audio.sample_rate:
            raise MediaError(f"audio at {sample_rate} Hz, the model expects {self.audio.sample_rate} Hz")
        cfg = self.audio.args
        windows, starts = frame_windows(waveform, sample_rate, cfg.window_s, cfg.hop_s)
        with self._no_grad():
            emb, lg = self._batched(
                self.branch_forward.get("audio", self.audio), self.audio.to_input, windows, self.batch_for("audio")
            )
            pooled = float(lg.mean())
            emb_mean, lg = _numpy(emb.mean(0)), _numpy(lg)
        cal = self.audio_meta.calibration
        ends = np.minimum(starts + cfg.window_s, max(waveform.size / sample_rate, cfg.window_s))
        return AudioOutput(pooled, float(cal(pooled)), emb_mean, lg, cal(lg), starts, ends)

    @property
    def uses_sync(self) -> bool:
        """Whether fusion weighs audio-visual sync (then :meth:`analyze_clip` measures it)."""
        return self.fusion is not None and self.fusion.sync_dim > 0

    def fusion_inputs(self, outputs: list[tuple[Any, ...]]) -> FusionInputs:  # (vision, audio[, sync]) per item
        """Stack (vision, audio[, sync]) outputs of N items into fusion inputs (zeros + flag 0 where missing)."""
        dv = self.vision.embed_dim if self.vision is not None else 0
        da = self.audio.embed_dim if self.audio is not None else 0
        return FusionInputs.from_outputs(outputs, dv, da, self.fusion.sync_dim if self.fusion is not None else 0)

    def fuse(self, v: VisionOutput | None, a: AudioOutput | None, s: SyncOutput | None = None) -> float:
        """Calibrated P(fake) from whichever outputs are present (at least one branch)."""
        if v is None and a is None:
            raise ValueError("nothing to fuse")
        if self.fusion is None:
            return v.p_fake if v is not None else a.p_fake  # type: ignore[union-attr]
        x = self.fusion_inputs([(v, a, s)])
        if isinstance(self.fusion, NumpyFusion):
            logit = float(self.fusion.logits(x)[0])
        else:
            with self._no_grad():
                logit = float(self.fusion(*x.tensors(self.device)).float().cpu()[0])
        return float(self.fusion_meta.calibration(logit))

    # ------------------------------------------------------------------ files
    def track_faces(self, clip: Clip) -> FaceTrack:
        """The main face track of a decoded clip."""
        return self.faces.track(clip.frames, clip.frame_times)

    def image_faces(self, image: np.ndarray, pred: Prediction) -> tuple[VisionOutput | None, FaceTrack]:
        """Image mode: score every face in ``image`` [H, W, 3]; the verdict follows the most suspicious one.

        With no face found, the whole image is scored as one face crop (datasets of generated faces are
        often tight crops that leave a detector nothing around the face to find).
        """
        d, crops = self.faces.faces_in_image(image)
        boxes, probs, landmarks = d.boxes, d.probs, d.landmarks
        if len(crops) == 0:
            h, w = image.shape[:2]
            crops = resize_square(image, self.faces.crop_size)[None]
            boxes, probs, landmarks = np.array([[0.0, 0.0, w, h]]), np.array([0.0]), np.zeros((1, 5, 2))
            pred.notes.append("no face detected: the whole image was scored as a face")
        outs = [self.vision_output(crops[i : i + 1], np.zeros(1), 1) for i in range(len(crops))]
        pred.faces = [
            {"box": b.tolist(), "prob": float(p), "p_fake": o.p_fake}
            for b, p, o in zip(boxes, probs, outs)
            if o is not None
        ]
        best = int(np.argmax([o.logit for o in outs]))  # type: ignore[union-attr]
        v = outs[best]
        if v is not None:
            v.frames, v.faces = 1, len(outs)
        # The most suspicious face first: explanations draw the track's leading crops.
        order = np.r_[best, np.delete(np.arange(len(crops)), best)]
        n = len(crops)
        return v, FaceTrack(
            crops[order], np.zeros(n, np.int64), np.zeros(n), boxes[order], probs[order], landmarks[order], 1
        )

    def analyze_clip(
        self, clip: Clip, pred: Prediction | None = None, provenance: Callable[[], None] | None = None
    ) -> Analysis:
        """Score an already decoded clip: the prediction, the clip and the face track that was scored.

        ``provenance``: called before the label is decided, to wait for a provenance stage running on another
        thread (see :meth:`analyze`). Raises :class:`MediaError` when nothing can be scored.
        """
        pred = pred or Prediction(path=clip.info.path)
        pred.info = clip.info
        timings = pred.timings
        v = a = None
        track = None
        reasons = []
        if self.vision is not None and clip.has_video and clip.info.kind == "image":
            t = time.perf_counter()
            v, track = self.image_faces(clip.frames[0], pred)  # type: ignore[index]
            timings["faces"] = timings["vision"] = time.perf_counter() - t
        elif self.vision is not None and clip.has_video:
            t = time.perf_counter()
            track = self.track_faces(clip)
            timings["faces"] = time.perf_counter() - t
            if len(track) == 0:
                reasons.append(f"no face found in {track.num_frames} sampled frame(s)")
            else:
                t = time.perf_counter()
                v = self.vision_output(track.crops, track.times, track.num_frames)
                timings["vision"] = time.perf_counter() - t
        elif clip.has_video:
            reasons.append("this checkpoint has no vision model")
        else:
            reasons.append("no video stream" if clip.info.kind == "audio" else "no frames")
        silent = clip.has_audio and float(np.abs(clip.waveform).max()) < SILENCE_PEAK  # type: ignore[arg-type]
        if self.audio is not None and clip.has_audio and silent:
            # A muted track carries no voice to judge; scoring it would be a guess on a constant input.
            reasons.append("the audio track is silent")
        elif self.audio is not None and clip.has_audio:
            t = time.perf_counter()
            a = self.audio_output(clip.waveform, clip.sample_rate)
            timings["audio"] = time.perf_counter() - t
        elif clip.has_audio:
            reasons.append("this checkpoint has no audio model")
        else:
            reasons.append("no audio track" if clip.info.kind != "image" else "a still image has no audio")
        if v is None and a is None:
            raise MediaError("nothing to score: " + "; ".join(reasons))
        s = None
        if self.uses_sync and v is not None and a is not None and track is not None and clip.info.kind == "video":
            t = time.perf_counter()
            mouth = measure_mouth(clip.dense, track.landmarks, track.times)
            s = sync_output(mouth, clip.waveform, clip.sample_rate) if mouth is not None else None  # type: ignore[arg-type]
            timings["sync"] = time.perf_counter() - t
            if s is None:
                pred.notes.append("audio-visual sync not measured: under 2 s of video with a face")
        pred.sync = s
        t = time.perf_counter()
        pred.p_fake = self.fuse(v, a, s)
        timings["fusion"] = time.perf_counter() - t
        pred.threshold = self.threshold
        if provenance is not None:
            provenance()
        # The model's P(fake) stays as it is; a file that declares itself AI-made (or carries a generator's
        # watermark) is labelled fake from that evidence, and pred.evidence says which evidence decided.
        pred.evidence = decide(pred.p_fake, pred.threshold, pred.provenance)
        pred.label = pred.evidence.label
        pred.notes.extend(pred.evidence.notes)
        pred.vision, pred.audio = v, a
        pred.notes.extend(f"{r}: scored without that modality" for r in reasons)
        pred.segments = per_second_segments(clip.duration, v, a)
        return Analysis(pred, clip, track)

    def analyze(self, path: str | Path) -> Analysis:
        """Decode and score one file: the prediction with what explanations need (the decoded clip, the face track).

        Never raises for a bad input: whatever goes wrong with this file is its prediction's ``error``
        (one line; an unexpected failure is an internal error naming the exception's type).
        """
        start = time.perf_counter()
        pred = Prediction(path=str(path))
        result = Analysis(pred)
        try:
            try:
                clip = decode(path, self.decode_cfg, DENSE if self.uses_sync else None)
            except MediaError:
                # A file the models cannot read may still say where it came from (a C2PA-signed HEIC, a clip
                # under the minimum length). The stage is safe on it: it never raises, refuses what is not a
                # regular file or is over decode.max_file_mb, and bounds what it reads and decodes.
                self.run_provenance(path, None, pred)
                raise
            pred.timings["decode"] = time.perf_counter() - start
            # On the frames already decoded (nothing is decoded twice), beside the models: see _provenance_beside.
            wait = self._provenance_beside(path, clip.frames if clip.info.kind == "video" else None, pred)
            try:
                result = self.analyze_clip(clip, pred, provenance=wait)
            finally:
                wait()
        except MediaError as exc:
            pred.error = exc.reason
        except Exception as exc:
            pred.error = " ".join(f"internal error: {type(exc).__name__}: {exc}".split())[:300]
            pred.notes.append(traceback.format_exc(limit=3).splitlines()[-1][:300])
        if pred.error is not None:
            # No label, but a declaration of AI generation is still worth a note.
            pred.evidence = decide(None, None, pred.provenance)
            pred.notes.extend(pred.evidence.notes)
        pred.seconds = time.perf_counter() - start
        return result

    def _provenance_beside(self, path: str | Path, frames: np.ndarray | None, pred: Prediction) -> Callable[[], None]:
        """Start :meth:`run_provenance` on a second thread; returns a function that waits for it and puts its report
        and time into ``pred`` (callable more than once).

        The stage (C2PA, metadata, the watermark decoder) is mostly single-threaded NumPy, OpenCV and native code
        that releases the GIL, while the face detector and the models leave part of the cores idle; only the label
        needs its report. ``pred.timings`` keeps the stage's place before the models.

        Without ``frames`` (a still image, an audio file) the stage runs here, in line: it decodes a still image
        again at native size for the watermark check (up to 50 MP), and beside the models that memory would add to
        theirs; on images and audio the stage is short anyway."""
        if not self.provenance.enabled:
            return lambda: None
        if frames is None:
            self.run_provenance(path, None, pred)
            return lambda: None
        pred.timings["provenance"] = 0.0  # its place among the stages; the time is filled in when it ends
        scratch = Prediction(path=pred.path)
        failure: list[BaseException] = []

        def work() -> None:
            try:
                self.run_provenance(path, frames, scratch)
            except BaseException as exc:  # handed to the caller's thread, as if the stage had run there
                failure.append(exc)

        thread = threading.Thread(target=work, name="provenance", daemon=True)
        thread.start()

        waited: list[bool] = []

        def wait() -> None:
            if waited:
                return
            waited.append(True)
            thread.join()
            if failure:
                raise failure[0]
            pred.provenance = scratch.provenance
            pred.timings["provenance"] = scratch.timings["provenance"]

        return wait

    def run_provenance(self, path: str | Path, frames: np.ndarray | None, pred: Prediction) -> None:
        """Inspect what ``path`` says about its origin into ``pred.provenance`` (unless switched off).

        ``frames``: the clip's decoded video frames, uint8 RGB [N, H, W, 3] at native resolution, checked for
        invisible watermarks; None for images (the stage reads them itself, with their metadata) and audio.
        Time in ``pred.timings["provenance"]``, seconds.
        """
        if not self.provenance.enabled:
            return
        t = time.perf_counter()
        pred.provenance = inspect_provenance(
            path,
            frames,
            trust_anchors=self.provenance.trust_anchors,
            max_file_bytes=int(self.decode_cfg.max_file_mb * 2**20),
        )
        pred.timings["provenance"] = time.perf_counter() - t

    def predict(self, path: str | Path) -> Prediction:
        """The verdict on one file (video, audio or image); see :class:`Prediction` and its ``to_json()``."""
        return self.analyze(path).prediction

    def stream(self, path: str | Path, chunk_s: float = 30.0) -> Iterator[ChunkResult | StreamVerdict]:
        """Score a long file chunk by chunk with bounded memory: yields a ``ChunkResult`` per chunk as soon as it is
        scored, then a ``StreamVerdict`` holding the whole file's :class:`Prediction` (no ``max_seconds`` cap; see
        :mod:`multimodal_df.pipeline.stream` for chunking and pooling)."""
        from .stream import stream

        return stream(self, path, chunk_s)

    def explain(self, target: str | Path | Analysis, top_k: int = 4) -> Explanation:
        """Heat maps, audio evidence and a timeline behind the verdict on a file (or an :class:`Analysis`);
        ``.save(dir)`` writes them with a self-contained ``report.html``."""
        from .explain import explain

        analysis = target if isinstance(target, Analysis) else self.analyze(target)
        return explain(self.torch_twin() if self.torch_free else self, analysis, top_k)

    def torch_twin(self) -> Detector:
        """This detector's checkpoint on PyTorch (loaded once, on first use): what only PyTorch computes, the
        gradients behind explanations, runs there. Only for a detector on the ONNX runtime, whose graph directory
        is a complete checkpoint."""
        if not self.torch_free:
            return self
        twin = getattr(self, "_twin", None)
        if twin is None:
            from .checkpoint import load_detector

            if self.runtime.graphs is None:
                raise CheckpointError("this detector has no checkpoint directory to load on PyTorch")
            twin = load_detector(self.runtime.graphs, "cuda" if str(self.device).startswith("cuda") else "cpu")
            twin.faces, twin.provenance = self.faces, self.provenance
            self._twin = twin
        return twin


def _numpy(x: Any) -> np.ndarray:
    """A CPU tensor or an array as a NumPy array (no copy for arrays)."""
    return x if isinstance(x, np.ndarray) else x.numpy()
