"""The detector: decode -> faces / waveform -> branch outputs -> fusion -> calibrated P(fake).

A checkpoint is a directory: ``config.json`` (everything needed to rebuild the models, their
preprocessing, calibration and threshold, the package version and a summary of the training
data) plus one safetensors file per model. Loading never unpickles anything.

A checkpoint may hold one branch (the output of ``train --stage vision`` or ``--stage audio``)
or both branches and a fusion model (``--stage fusion``); the same class runs all of them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .audio.features import frame_windows
from .audio.model import AudioModel
from .config import AudioConfig, DecodeConfig, FaceConfig, FusionConfig, VisionConfig, from_dict, to_dict
from .decode import Clip, decode
from .errors import CheckpointError, MediaError
from .weights import load_weights, save_weights
from .fusion.model import Calibration, FusionInputs, LateFusion
from .outputs import AudioOutput, Prediction, VisionOutput, per_second_segments
from .sync import SyncOutput, measure_mouth, sync_output
from .vision.faces import FaceDetector, FaceTrack, resize_square
from .vision.model import VisionModel

FORMAT = "multimodal_df/detector"
FORMAT_VERSION = 1


SILENCE_PEAK = 1e-3
"""Audio whose peak amplitude stays below this (-60 dBFS) is treated as absent."""


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but no CUDA GPU is available")
    return torch.device(device)


@dataclass
class BranchMeta:
    """What a checkpoint stores about a trained model besides its weights."""

    calibration: Calibration = field(default_factory=Calibration)
    threshold: float = 0.5
    metrics: dict[str, Any] = field(default_factory=dict)


def _meta_json(m: BranchMeta) -> dict[str, Any]:
    return {"calibration": dataclasses.asdict(m.calibration), "threshold": m.threshold, "metrics": m.metrics}


def _meta_from(d: dict[str, Any]) -> BranchMeta:
    return BranchMeta(Calibration(**d.get("calibration", {})), float(d.get("threshold", 0.5)), dict(d.get("metrics", {})))


class Detector:
    """Runs the whole pipeline on files. Build with :meth:`load` or from trained parts."""

    def __init__(
        self,
        decode_cfg: DecodeConfig,
        face_cfg: FaceConfig,
        vision: VisionModel | None = None,
        audio: AudioModel | None = None,
        fusion: LateFusion | None = None,
        vision_meta: BranchMeta | None = None,
        audio_meta: BranchMeta | None = None,
        fusion_meta: BranchMeta | None = None,
        fusion_cfg: FusionConfig | None = None,
        training_data: dict[str, Any] | None = None,
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
        self.fusion_cfg = fusion_cfg or FusionConfig()
        self.training_data = training_data or {}
        self.batch_size = batch_size
        self.device = torch.device(device)
        for m in (vision, audio, fusion):
            if m is not None:
                m.to(self.device).eval()
        self.faces = FaceDetector(face_cfg, vision.cfg.input_size if vision is not None else 224, str(self.device))

    # ------------------------------------------------------------------ persistence
    @property
    def threshold(self) -> float:
        if self.fusion is not None:
            return self.fusion_meta.threshold
        return (self.vision_meta if self.vision is not None else self.audio_meta).threshold

    def save(self, directory: str | Path) -> Path:
        """Write ``config.json`` and safetensors weights into ``directory`` (created if needed)."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        cfg: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "package_version": __version__,
            "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "decode": to_dict(self.decode_cfg),
            "faces": to_dict(self.face_cfg),
            "vision": None,
            "audio": None,
            "fusion": None,
            "threshold": self.threshold,
            "training_data": self.training_data,
        }
        if self.vision is not None:
            save_weights(self.vision, d / "vision.safetensors")
            cfg["vision"] = {"config": to_dict(self.vision.cfg), **_meta_json(self.vision_meta)}
        if self.audio is not None:
            save_weights(self.audio, d / "audio.safetensors")
            cfg["audio"] = {"config": to_dict(self.audio.cfg), "sample_rate": self.audio.sample_rate, **self.audio.extra_config(), **_meta_json(self.audio_meta)}
        if self.fusion is not None:
            save_weights(self.fusion, d / "fusion.safetensors")
            cfg["fusion"] = {
                "config": to_dict(self.fusion_cfg),
                "method": self.fusion.method,
                "vision_dim": self.fusion.vision_dim,
                "audio_dim": self.fusion.audio_dim,
                "sync_dim": self.fusion.sync_dim,
                **_meta_json(self.fusion_meta),
            }
        tmp = d / "config.json.tmp"
        tmp.write_text(json.dumps(cfg, indent=2, default=_json_default))
        tmp.replace(d / "config.json")
        return d

    @classmethod
    def load(cls, directory: str | Path, device: str = "auto") -> "Detector":
        """Rebuild a detector from a checkpoint directory (no network, no pickle)."""
        d = Path(directory)
        cfg_path = d / "config.json"
        if not cfg_path.is_file():
            raise CheckpointError(f"{d} is not a checkpoint directory (no config.json)")
        try:
            cfg = json.loads(cfg_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{cfg_path}: not valid JSON ({exc})") from None
        if cfg.get("format") != FORMAT:
            raise CheckpointError(f"{cfg_path}: not a multimodal_df detector checkpoint")
        if int(cfg.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(f"{cfg_path}: written by a newer multimodal_df ({cfg.get('package_version')}); upgrade to load it")

        def weights(name: str) -> str:
            p = d / f"{name}.safetensors"
            if not p.is_file():
                raise CheckpointError(f"{d}: {p.name} is missing")
            return str(p)

        vision = audio = fusion = None
        vm = am = fm = None
        fusion_cfg = None
        if cfg.get("vision"):
            vision = VisionModel(from_dict(VisionConfig, cfg["vision"]["config"], "vision.config"))
            load_weights(vision, weights("vision"))
            vm = _meta_from(cfg["vision"])
        if cfg.get("audio"):
            a = cfg["audio"]
            audio = AudioModel(from_dict(AudioConfig, a["config"], "audio.config"), int(a.get("sample_rate", 16000)), a.get("wav2vec_hf"))
            load_weights(audio, weights("audio"))
            am = _meta_from(a)
        if cfg.get("fusion"):
            f = cfg["fusion"]
            fusion_cfg = from_dict(FusionConfig, f["config"], "fusion.config")
            fusion = LateFusion(f["method"], int(f["vision_dim"]), int(f["audio_dim"]), fusion_cfg.hidden, sync_dim=int(f.get("sync_dim", 0)))
            load_weights(fusion, weights("fusion"))
            fm = _meta_from(f)
        return cls(
            from_dict(DecodeConfig, cfg.get("decode", {}), "decode"),
            from_dict(FaceConfig, cfg.get("faces", {}), "faces"),
            vision,
            audio,
            fusion,
            vm,
            am,
            fm,
            fusion_cfg,
            cfg.get("training_data", {}),
            resolve_device(device),
        )

    # ------------------------------------------------------------------ branches
    def _autocast(self):  # noqa: ANN202
        return torch.autocast(device_type="cuda", dtype=torch.float16, enabled=self.device.type == "cuda")

    def _batched(self, model: torch.nn.Module, to_input, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
        """Run ``model`` over ``items`` in batches; returns (embeddings [N, D], logits [N]) on the CPU, float32."""
        embs, logits = [], []
        for i in range(0, len(items), self.batch_size):
            x = to_input(items[i : i + self.batch_size], self.device)
            with self._autocast():
                e, lg = model(x)
            embs.append(e.float().cpu())
            logits.append(lg.float().cpu())
        return torch.cat(embs), torch.cat(logits)

    @torch.inference_mode()
    def vision_output(self, crops: np.ndarray, times: np.ndarray, frames: int) -> VisionOutput | None:
        """Score face crops uint8 [K, S, S, 3] taken at ``times`` [K]; None when K == 0."""
        if self.vision is None or len(crops) == 0:
            return None
        emb, lg = self._batched(self.vision, VisionModel.to_input, crops)
        pooled = float(self.vision.pool(lg))
        cal = self.vision_meta.calibration
        return VisionOutput(pooled, float(cal(pooled)), emb.mean(0).numpy(), lg.numpy(), cal(lg.numpy()), np.asarray(times, float), frames, len(crops))

    @torch.inference_mode()
    def audio_output(self, waveform: np.ndarray | None, sample_rate: int = 16000) -> AudioOutput | None:
        """Score a mono waveform [T] window by window; None without audio."""
        if self.audio is None or waveform is None or waveform.size == 0:
            return None
        if sample_rate != self.audio.sample_rate:
            raise MediaError(f"audio at {sample_rate} Hz, the model expects {self.audio.sample_rate} Hz")
        cfg = self.audio.cfg
        windows, starts = frame_windows(waveform, sample_rate, cfg.window_s, cfg.hop_s)
        emb, lg = self._batched(self.audio, AudioModel.to_input, windows)
        pooled = float(lg.mean())
        cal = self.audio_meta.calibration
        ends = np.minimum(starts + cfg.window_s, max(waveform.size / sample_rate, cfg.window_s))
        return AudioOutput(pooled, float(cal(pooled)), emb.mean(0).numpy(), lg.numpy(), cal(lg.numpy()), starts, ends)

    @property
    def uses_sync(self) -> bool:
        """Whether fusion weighs audio-visual sync (then :meth:`analyze_clip` measures it)."""
        return self.fusion is not None and self.fusion.sync_dim > 0

    def fusion_inputs(self, outputs: list[tuple[Any, ...]]) -> FusionInputs:
        """Stack (vision, audio[, sync]) outputs of N items into fusion inputs (zeros + flag 0 where missing)."""
        dv = self.vision.embed_dim if self.vision is not None else 0
        da = self.audio.embed_dim if self.audio is not None else 0
        return FusionInputs.from_outputs(outputs, dv, da, self.fusion.sync_dim if self.fusion is not None else 0)

    @torch.inference_mode()
    def fuse(self, v: VisionOutput | None, a: AudioOutput | None, s: SyncOutput | None = None) -> float:
        """Calibrated P(fake) from whichever outputs are present (at least one branch)."""
        if v is None and a is None:
            raise ValueError("nothing to fuse")
        if self.fusion is None:
            return v.p_fake if v is not None else a.p_fake  # type: ignore[union-attr]
        x = self.fusion_inputs([(v, a, s)])
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
        pred.faces = [{"box": b.tolist(), "prob": float(p), "p_fake": o.p_fake} for b, p, o in zip(boxes, probs, outs) if o is not None]
        best = int(np.argmax([o.logit for o in outs]))  # type: ignore[union-attr]
        v = outs[best]
        if v is not None:
            v.frames, v.faces = 1, len(outs)
        # The most suspicious face first: explanations draw the track's leading crops.
        order = np.r_[best, np.delete(np.arange(len(crops)), best)]
        n = len(crops)
        return v, FaceTrack(crops[order], np.zeros(n, np.int64), np.zeros(n), boxes[order], probs[order], landmarks[order], 1)

    def analyze_clip(self, clip: Clip, pred: Prediction | None = None) -> tuple[Prediction, FaceTrack | None]:
        """Score an already decoded clip; returns the prediction and the face track that was scored.

        Raises :class:`MediaError` when nothing can be scored.
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
            mouth = measure_mouth(clip.info.path, track.landmarks, track.times)
            s = sync_output(mouth, clip.waveform, clip.sample_rate) if mouth is not None else None  # type: ignore[arg-type]
            timings["sync"] = time.perf_counter() - t
            if s is None:
                pred.notes.append("audio-visual sync not measured: under 2 s of video with a face")
        pred.sync = s
        t = time.perf_counter()
        pred.p_fake = self.fuse(v, a, s)
        timings["fusion"] = time.perf_counter() - t
        pred.threshold = self.threshold
        pred.label = "fake" if pred.p_fake >= pred.threshold else "real"
        pred.vision, pred.audio = v, a
        pred.notes.extend(f"{r}: scored without that modality" for r in reasons)
        pred.segments = per_second_segments(clip.duration, v, a)
        return pred, track

    def analyze(self, path: str | Path) -> Prediction:
        """Decode and score one file. Never raises for bad input: the reason goes in ``error``."""
        return self.analyze_full(path)[0]

    def analyze_full(self, path: str | Path) -> tuple[Prediction, Clip | None, FaceTrack | None]:
        """:meth:`analyze`, also returning the decoded clip and face track (for explanations)."""
        start = time.perf_counter()
        pred = Prediction(path=str(path))
        clip = track = None
        try:
            clip = decode(path, self.decode_cfg)
            pred.timings["decode"] = time.perf_counter() - start
            _, track = self.analyze_clip(clip, pred)
        except MediaError as exc:
            pred.error = exc.reason
        except (MemoryError, RuntimeError, ValueError, OSError) as exc:
            # An unexpected failure on one file must not end a batch; keep the reason on one line.
            pred.error = " ".join(f"internal error: {type(exc).__name__}: {exc}".split())[:300]
            pred.notes.append(traceback.format_exc(limit=3).splitlines()[-1])
        pred.seconds = time.perf_counter() - start
        return pred, clip, track


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
