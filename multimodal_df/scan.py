"""Score many files with Ray Data: decoding and face tracking on CPU workers, the models in an actor pool.

    python -m multimodal_df.scan INPUTS... --out results.jsonl [--checkpoint DIR] [--address ADDR]
        [--runtime torch|onnx] [--batch-size N] [--num-cpus N]

INPUTS are files, folders (scanned for media like ``predict`` does), CSV manifests (their ``path``
column, relative paths taken from the CSV's folder) or URIs that pyarrow's file systems read
(``file:///data/clips``, ``s3://bucket/prefix``; remote files are copied to a temporary file on the worker).

Each output line is one ``predict --json`` record (errors included, same schema); lines are appended
as results arrive, and inputs whose path is already in ``--out`` are skipped, so a run that was
stopped continues where it was. Without ``--address`` a local Ray starts in this process and stops
at the end; ``--address`` joins an existing cluster (``auto``, ``ray://host:10001``), where the model
stage asks for one GPU per actor when the cluster has GPUs.

Exit status: 0 every input scored, 1 some inputs had errors (each has its line), 2 usage or checkpoint
error, 3 the process itself failed.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import io
import json
import os
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .errors import CheckpointError, ConfigError, ExitCode, MediaError, one_line, run_command
from .pipeline.checkpoint import CHECKPOINT_ENV

Mode = Literal["video", "image", "audio"]
"""How the model stage scores a prepared file: the main face track, every face of a still image, or audio only."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m multimodal_df.scan",
        description="Score many files on a Ray cluster (or a local one); one predict --json record per line.",
    )
    p.add_argument("inputs", nargs="+", help="files, folders, CSV manifests (path column) or URIs (s3://, file://)")
    p.add_argument("--out", required=True, help="JSON-lines file; appended to, and inputs already in it are skipped")
    p.add_argument("--checkpoint", help=f"detector directory (default: ${CHECKPOINT_ENV}, else the shipped model)")
    p.add_argument("--address", help="join this Ray cluster (default: start a local one in this process)")
    p.add_argument("--runtime", default="torch", choices=["torch", "onnx"], help="how the models run")
    p.add_argument(
        "--batch-size", type=int, default=2, help="files per call of a model actor (each file is one forward pass)"
    )
    p.add_argument("--num-cpus", type=int, help="CPUs of the local Ray (default: all); ignored with --address")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="device of the model actors")
    p.add_argument("--no-provenance", action="store_true", help="skip the provenance stage, as predict does")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


# ---------------------------------------------------------------------------------------------- inputs
def _is_uri(text: str) -> bool:
    return "://" in text


def _uri_inputs(uri: str) -> Iterator[tuple[str, str | None]]:
    """Files under a URI (recursively, media extensions only, sorted) or the URI itself when it names a file."""
    from pyarrow import fs as pafs

    from .media.sniff import MEDIA_EXTENSIONS

    try:
        filesystem, root = pafs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
    except Exception as exc:  # an unknown scheme, missing credentials, a bad bucket: this input's error line
        yield uri, f"cannot open {uri}: {one_line(exc, 200)}"
        return
    if info.type == pafs.FileType.NotFound:
        yield uri, f"file not found: {uri}"
    elif info.type == pafs.FileType.Directory:
        infos = filesystem.get_file_info(pafs.FileSelector(root, recursive=True))
        found = sorted(i.path for i in infos if i.is_file and Path(i.path).suffix.lower() in MEDIA_EXTENSIONS)
        # Listed paths come back without the scheme ("bucket/key", "/abs/file"); keep them URIs so a resume matches.
        scheme = uri[: uri.index("://") + 3]
        for path in found:
            yield scheme + path, None
        if not found:
            yield uri, "no media files in this folder"
    else:
        yield uri, None


def _manifest_inputs(csv_path: Path) -> Iterator[tuple[str, str | None]]:
    """The ``path`` column of a CSV manifest; relative paths are relative to the CSV's folder."""
    with open(csv_path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if "path" not in (reader.fieldnames or []):
            raise ConfigError(f"{csv_path}: a manifest needs a path column (has {reader.fieldnames})")
        for row in reader:
            p = (row.get("path") or "").strip()
            if not p:
                continue
            yield (p if _is_uri(p) or os.path.isabs(p) else str((csv_path.parent / p).resolve())), None


def expand_inputs(inputs: list[str]) -> list[tuple[str, str | None]]:
    """Every file the inputs name, once, in order: (path or URI, error-or-None), as ``predict`` lists them."""
    from .media.sniff import iter_inputs

    out: list[tuple[str, str | None]] = []
    for item in inputs:
        if _is_uri(item):
            out.extend(_uri_inputs(item))
        elif item.lower().endswith(".csv") and os.path.isfile(item):
            out.extend(_manifest_inputs(Path(item)))
        else:
            out.extend(iter_inputs([item]))
    seen: set[str] = set()
    return [(p, e) for p, e in out if not (p in seen or seen.add(p))]  # type: ignore[func-returns-value]


def done_records(out: Path) -> dict[str, dict[str, Any]]:
    """Records already in ``out`` by path. A last line cut short by a crash is removed so appends stay valid."""
    if not out.is_file():
        return {}
    data = out.read_bytes()
    if data and not data.endswith(b"\n"):
        with open(out, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
        data = data[: data.rfind(b"\n") + 1]
    records: dict[str, dict[str, Any]] = {}
    for line in data.decode("utf-8", "replace").splitlines():
        try:
            rec = json.loads(line)
            records[str(rec["path"])] = rec
        except (ValueError, KeyError, TypeError):
            continue
    return records


# ---------------------------------------------------------------------------------------------- records
@dataclass
class ScanSettings:
    """What the CPU stage needs from the checkpoint, as plain data (the CPU workers never load the models)."""

    decode: dict[str, Any]
    faces: dict[str, Any]
    crop_size: int
    has_vision: bool
    has_audio: bool
    uses_sync: bool
    provenance: bool = True
    trust_anchors: str | None = None
    mtcnn_graphs: str | None = None
    """The ONNX MTCNN graphs the detector finds faces with (``--runtime onnx``), so the CPU workers find the same
    faces as ``predict --runtime onnx``; None: facenet-pytorch."""


@dataclass
class PreparedClip:
    """One file after decoding, provenance, face tracking and the sync measure: all the model stage needs.

    ``record``: the final JSON line when the CPU stage already settled the file (an error), else None.
    ``crops`` uint8 [K, S, S, 3] with ``crop_times`` [K] s; image mode also ``boxes`` [K, 4] and ``probs`` [K]
    (one crop per face). ``waveform`` float32 [T] at ``sample_rate`` Hz (empty when audio is not scored).
    ``sync_offsets`` / ``sync_corr`` [J]: the sync profile, when measured. ``notes`` / ``reasons``: as
    :meth:`Detector.analyze_clip` adds them; ``timings`` in seconds.
    """

    path: str
    record: str | None = None
    mode: Mode = "video"
    info: dict[str, Any] | None = None
    provenance: dict[str, Any] | None = None
    crops: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    crop_times: np.ndarray = field(default_factory=lambda: np.zeros(0))
    num_frames: int = 0
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    probs: np.ndarray = field(default_factory=lambda: np.zeros(0))
    waveform: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    sample_rate: int = 16000
    duration: float = 0.0
    sync_offsets: np.ndarray | None = None
    sync_corr: np.ndarray | None = None
    sync_seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    _ARRAYS = ("crops", "crop_times", "boxes", "probs", "waveform", "sync_offsets", "sync_corr")

    def to_row(self) -> dict[str, Any]:
        """A Ray row of plain data: ``path`` and ``record`` strings, ``meta`` JSON, ``arrays`` an uncompressed
        ``.npz`` (no pickle), so rows move between workers as bytes whatever shapes the arrays have."""
        meta = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in self._ARRAYS}
        arrays = {k: getattr(self, k) for k in self._ARRAYS if getattr(self, k) is not None}
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        return {"path": self.path, "record": self.record or "", "meta": json.dumps(meta), "arrays": buf.getvalue()}

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PreparedClip:
        meta = json.loads(str(row["meta"]))
        with np.load(io.BytesIO(bytes(row["arrays"])), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        return cls(**meta, **arrays)


def settings_of(detector: Any, provenance: bool = True, trust_anchors: str | None = None) -> ScanSettings:
    """The CPU stage's settings for a loaded detector."""
    from .config import to_dict

    return ScanSettings(
        to_dict(detector.decode_cfg),
        to_dict(detector.face_cfg),
        int(detector.faces.crop_size),
        detector.vision is not None,
        detector.audio is not None,
        bool(detector.uses_sync),
        provenance,
        trust_anchors,
        getattr(detector.faces, "mtcnn_graphs", None),
    )


def _error_record(pred: Any, error: str, internal: bool = False) -> str:
    """``pred`` as an error record, as :meth:`Detector.analyze` leaves it."""
    from .provenance import decide

    pred.error = error
    if internal:
        pred.notes.append(traceback.format_exc(limit=3).splitlines()[-1][:300])
    pred.evidence = decide(None, None, pred.provenance)
    pred.notes.extend(pred.evidence.notes)
    return json.dumps(pred.to_json())


def _fetch(uri: str, tmp: Path) -> Path:
    """Copy a URI's file to ``tmp`` (named like it, so decoders that look at the suffix still can)."""
    from pyarrow import fs as pafs

    filesystem, path = pafs.FileSystem.from_uri(uri)
    local = tmp / ("input" + Path(path).suffix)
    with filesystem.open_input_stream(path) as src, open(local, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    return local


class Prepare:
    """Ray UDF (one per CPU actor): decode, provenance, faces, waveform and sync of one file per row.

    Mirrors the CPU half of :meth:`Detector.analyze` / :meth:`Detector.analyze_clip` (what they note, in
    the same order), so the model stage reproduces ``predict`` exactly.
    """

    def __init__(self, settings: dict[str, Any]) -> None:
        from .config import DecodeConfig, FaceConfig, from_dict
        from .vision.faces import FaceDetector

        warnings.filterwarnings("ignore")
        self.s = ScanSettings(**settings)
        if self.s.mtcnn_graphs is None:
            import torch

            torch.set_num_threads(1)  # one file per CPU actor; parallelism comes from the actors
        self.decode_cfg = from_dict(DecodeConfig, self.s.decode)
        self.faces = FaceDetector(
            from_dict(FaceConfig, self.s.faces), self.s.crop_size, "cpu", mtcnn_graphs=self.s.mtcnn_graphs
        )

    def __call__(self, row: dict[str, Any]) -> dict[str, Any]:
        path, err = str(row["path"]), str(row.get("error") or "")
        from .pipeline.outputs import Prediction

        if err:
            # What predict writes for an input it could not even open (a folder without media): no evidence.
            return PreparedClip(path, json.dumps(Prediction(path=path, error=err).to_json())).to_row()
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="mdf-scan-") as tmp:
            try:
                local = _fetch(path, Path(tmp)) if _is_uri(path) else Path(path)
            except Exception as exc:
                return PreparedClip(
                    path, _error_record(Prediction(path=path), f"cannot read {path}: {one_line(exc, 200)}")
                ).to_row()
            prep = self.prepare(local, path, start)
        return prep.to_row()

    def _provenance(self, local: Path, frames: np.ndarray | None, pred: Any) -> None:
        from .provenance import inspect_provenance

        if not self.s.provenance:
            return
        t = time.perf_counter()
        pred.provenance = inspect_provenance(
            local, frames, trust_anchors=self.s.trust_anchors, max_file_bytes=int(self.decode_cfg.max_file_mb * 2**20)
        )
        pred.timings["provenance"] = time.perf_counter() - t

    def prepare(self, local: Path, path: str, start: float) -> PreparedClip:
        """Everything up to the models for one file; errors become a finished error record."""
        from .fusion.sync import DENSE, measure_mouth, sync_output
        from .pipeline.detector import SILENCE_PEAK
        from .pipeline.outputs import Prediction
        from .provenance.report import to_jsonable
        from .vision.crops import resize_square

        pred = Prediction(path=path)
        try:
            from .media.decode import decode

            try:
                clip = decode(local, self.decode_cfg, DENSE if self.s.uses_sync else None)
            except MediaError:
                self._provenance(local, None, pred)
                raise
            pred.timings["decode"] = time.perf_counter() - start
            self._provenance(local, clip.frames if clip.info.kind == "video" else None, pred)
            clip.info.path = path
            pred.info = clip.info
            prep = PreparedClip(path, info=to_jsonable(clip.info), sample_rate=clip.sample_rate, duration=clip.duration)
            if pred.provenance is not None:
                prep.provenance = to_jsonable(pred.provenance)
            has_v = False
            t = time.perf_counter()
            if self.s.has_vision and clip.has_video and clip.info.kind == "image":
                image = clip.frames[0]  # type: ignore[index]
                d, crops = self.faces.faces_in_image(image)
                boxes, probs = d.boxes, d.probs
                if len(crops) == 0:
                    h, w = image.shape[:2]
                    crops = resize_square(image, self.faces.crop_size)[None]
                    boxes, probs = np.array([[0.0, 0.0, w, h]]), np.array([0.0])
                    prep.notes.append("no face detected: the whole image was scored as a face")
                prep.mode, prep.crops, prep.boxes, prep.probs = (
                    "image",
                    crops,
                    np.asarray(boxes, float),
                    np.asarray(probs, float),
                )
                prep.crop_times, prep.num_frames, has_v = np.zeros(len(crops)), 1, True
                prep.timings["faces"] = time.perf_counter() - t
                track = None
            elif self.s.has_vision and clip.has_video:
                track = self.faces.track(clip.frames, clip.frame_times)
                prep.timings["faces"] = time.perf_counter() - t
                if len(track) == 0:
                    prep.reasons.append(f"no face found in {track.num_frames} sampled frame(s)")
                else:
                    prep.crops, prep.crop_times, prep.num_frames, has_v = (
                        track.crops,
                        track.times,
                        track.num_frames,
                        True,
                    )
            else:
                track = None
                prep.mode = "audio"
                if clip.has_video:
                    prep.reasons.append("this checkpoint has no vision model")
                else:
                    prep.reasons.append("no video stream" if clip.info.kind == "audio" else "no frames")
            silent = clip.has_audio and float(np.abs(clip.waveform).max()) < SILENCE_PEAK  # type: ignore[arg-type]
            has_a = False
            if self.s.has_audio and clip.has_audio and silent:
                prep.reasons.append("the audio track is silent")
            elif self.s.has_audio and clip.has_audio:
                prep.waveform, has_a = np.asarray(clip.waveform, np.float32), True
            elif clip.has_audio:
                prep.reasons.append("this checkpoint has no audio model")
            else:
                prep.reasons.append("no audio track" if clip.info.kind != "image" else "a still image has no audio")
            if not has_v and not has_a:
                raise MediaError("nothing to score: " + "; ".join(prep.reasons))
            if self.s.uses_sync and has_v and has_a and track is not None and clip.info.kind == "video":
                t = time.perf_counter()
                mouth = measure_mouth(clip.dense, track.landmarks, track.times)
                s = sync_output(mouth, clip.waveform, clip.sample_rate) if mouth is not None else None  # type: ignore[arg-type]
                prep.timings["sync"] = time.perf_counter() - t
                if s is None:
                    prep.notes.append("audio-visual sync not measured: under 2 s of video with a face")
                else:
                    prep.sync_offsets, prep.sync_corr, prep.sync_seconds = s.offsets, s.corr, float(s.seconds)
            prep.timings = {**pred.timings, **prep.timings}
            prep.seconds = time.perf_counter() - start
            return prep
        except MediaError as exc:
            pred.seconds = time.perf_counter() - start
            return PreparedClip(path, _error_record(pred, exc.reason))
        except Exception as exc:
            pred.seconds = time.perf_counter() - start
            return PreparedClip(
                path, _error_record(pred, one_line(f"internal error: {type(exc).__name__}: {exc}"), True)
            )


def score_prepared(detector: Any, prep: PreparedClip) -> dict[str, Any]:
    """The model half of :meth:`Detector.analyze_clip` on a prepared file: the ``predict --json`` record."""
    from .config import from_dict
    from .fusion.sync import SyncOutput
    from .media.decode import MediaInfo
    from .pipeline.outputs import Prediction, per_second_segments
    from .provenance import decide
    from .provenance.report import ProvenanceReport

    start = time.perf_counter()
    pred = Prediction(path=prep.path, notes=list(prep.notes), timings=dict(prep.timings))
    try:
        pred.info = from_dict(MediaInfo, prep.info) if prep.info is not None else None
        pred.provenance = from_dict(ProvenanceReport, prep.provenance) if prep.provenance is not None else None
        v = a = None
        t = time.perf_counter()
        if prep.mode == "image":
            outs = [detector.vision_output(prep.crops[i : i + 1], np.zeros(1), 1) for i in range(len(prep.crops))]
            pred.faces = [
                {"box": b.tolist(), "prob": float(p), "p_fake": o.p_fake}
                for b, p, o in zip(prep.boxes, prep.probs, outs)
                if o is not None
            ]
            v = outs[int(np.argmax([o.logit for o in outs]))]
            if v is not None:
                v.frames, v.faces = 1, len(outs)
        elif len(prep.crops):
            v = detector.vision_output(prep.crops, prep.crop_times, prep.num_frames)
        if v is not None:
            pred.timings["vision"] = time.perf_counter() - t
        if prep.waveform.size:
            t = time.perf_counter()
            a = detector.audio_output(prep.waveform, prep.sample_rate)
            pred.timings["audio"] = time.perf_counter() - t
        if v is None and a is None:
            raise MediaError("nothing to score: " + "; ".join(prep.reasons))
        s = None
        if prep.sync_corr is not None and v is not None and a is not None:
            s = SyncOutput(prep.sync_offsets, prep.sync_corr, prep.sync_seconds)  # type: ignore[arg-type]
        pred.sync = s
        t = time.perf_counter()
        pred.p_fake = detector.fuse(v, a, s)
        pred.timings["fusion"] = time.perf_counter() - t
        pred.threshold = detector.threshold
        pred.evidence = decide(pred.p_fake, pred.threshold, pred.provenance)
        pred.label = pred.evidence.label
        pred.notes.extend(pred.evidence.notes)
        pred.vision, pred.audio = v, a
        pred.notes.extend(f"{r}: scored without that modality" for r in prep.reasons)
        pred.segments = per_second_segments(prep.duration, v, a)
        pred.seconds = prep.seconds + time.perf_counter() - start
        return pred.to_json()
    except MediaError as exc:
        pred.seconds = prep.seconds + time.perf_counter() - start
        return json.loads(_error_record(pred, exc.reason))
    except Exception as exc:
        pred.seconds = prep.seconds + time.perf_counter() - start
        return json.loads(_error_record(pred, one_line(f"internal error: {type(exc).__name__}: {exc}"), True))


def load_detector(checkpoint: str | None, device: str, runtime: str = "torch") -> Any:
    """:func:`multimodal_df.predict.load_checked` with ``runtime`` passed through (a usage error where this
    install's ``load_checked`` has no runtime choice and something other than torch is asked for)."""
    import inspect

    from .predict import load_checked

    if "runtime" in inspect.signature(load_checked).parameters:
        return load_checked(checkpoint, device, runtime=runtime)
    if runtime != "torch":
        raise CheckpointError(f"--runtime {runtime}: this install only runs torch models")
    return load_checked(checkpoint, device)


class Score:
    """Ray UDF (one per model actor): loads the detector once, scores a batch of prepared files."""

    def __init__(self, checkpoint: str | None, device: str, runtime: str, provenance: bool) -> None:
        import torch

        warnings.filterwarnings("ignore")
        if device == "cpu":
            # Ray gives a CPU model actor its share of cores through OMP_NUM_THREADS; torch should use them.
            torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
        self.detector = load_detector(checkpoint, device, runtime)
        self.detector.provenance.enabled = provenance

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
        lines = []
        for i in range(len(batch["path"])):
            row = {k: batch[k][i] for k in batch}
            if row["record"]:
                lines.append(str(row["record"]))
                continue
            try:
                rec = score_prepared(self.detector, PreparedClip.from_row(row))
            except Exception as exc:  # a row that cannot be read back: its own error line, never a failed job
                from .pipeline.outputs import Prediction

                rec = json.loads(
                    _error_record(
                        Prediction(path=str(row["path"])),
                        one_line(f"internal error: {type(exc).__name__}: {exc}"),
                        True,
                    )
                )
            lines.append(json.dumps(rec))
        return {"path": [str(p) for p in batch["path"]], "record": lines}


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class ScanResult:
    """What a scan did: ``scored`` new records written, ``skipped`` already in the output, ``errors`` among all inputs."""

    scored: int
    skipped: int
    errors: int
    seconds: float


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join ``address`` or start a quiet local Ray; returns whether this process started it (and should stop it)."""
    import logging

    import ray

    if ray.is_initialized():
        return False
    # Ray's own INFO lines (executor start/finish, core worker notices) would drown the summary line.
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    quiet = dict(logging_level=logging.ERROR, log_to_driver=False, configure_logging=True)
    if address:
        ray.init(address=address, **quiet)  # type: ignore[arg-type]
        return True
    ray.init(
        num_cpus=num_cpus or os.cpu_count() or 1,
        num_gpus=None,
        include_dashboard=False,
        # The package must be importable by the workers: they start from the driver's working directory.
        runtime_env={"env_vars": {"PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}},
        **quiet,  # type: ignore[arg-type]
    )
    return True


def scan(
    inputs: list[str],
    out: str | Path,
    checkpoint: str | None = None,
    address: str | None = None,
    runtime: str = "torch",
    batch_size: int = 2,
    num_cpus: int | None = None,
    device: str = "auto",
    provenance: bool = True,
    progress: bool = True,
) -> ScanResult:
    """Score ``inputs`` into the JSON-lines file ``out`` with Ray Data (see the module docstring)."""
    import ray

    t0 = time.perf_counter()
    out = Path(out)
    if batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    # Validate the checkpoint here, before any cluster work: a bad one is a usage error (exit 2).
    detector = load_detector(checkpoint, "cpu", runtime)
    settings = settings_of(detector, provenance)
    del detector
    items = expand_inputs(inputs)
    done = done_records(out)
    todo = [(p, e) for p, e in items if p not in done]
    errors = sum(1 for p, _ in items if p in done and done[p].get("error") is not None)
    if not todo:
        return ScanResult(0, len(items) - len(todo), errors, time.perf_counter() - t0)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = start_ray(address, num_cpus)
    try:
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = progress
        ctx.print_on_execution_start = False
        resources = ray.cluster_resources()
        gpus = int(resources.get("GPU", 0))
        cpus = max(1, int(resources.get("CPU", 1)))
        if device == "cuda" and gpus == 0:
            raise ConfigError("--device cuda was asked for, but the Ray cluster has no GPU")
        use_gpu = gpus > 0 and device != "cpu"
        model_cpus = 1
        n_models = max(1, gpus) if use_gpu else 1
        # Each model actor holds one CPU (and a GPU where there are GPUs); the CPU stage gets the rest.
        n_prepare = max(1, cpus - n_models * model_cpus)
        ds = ray.data.from_items([{"path": p, "error": e or ""} for p, e in todo], override_num_blocks=len(todo))
        ds = ds.map(
            Prepare,
            fn_constructor_kwargs={"settings": dataclasses.asdict(settings)},
            # A fixed pool: an autoscaling one starts with one actor and grows only after a backlog builds.
            compute=ray.data.ActorPoolStrategy(size=min(n_prepare, len(todo))),
            num_cpus=1,
        )
        ds = ds.map_batches(
            Score,
            fn_constructor_kwargs={
                "checkpoint": checkpoint,
                "device": "cuda" if use_gpu else "cpu",
                "runtime": runtime,
                "provenance": provenance,
            },
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=n_models),
            num_gpus=1 if use_gpu else 0,
            num_cpus=model_cpus,
        )
        scored = 0
        with open(out, "a", encoding="utf-8") as fh:
            for row in ds.iter_rows():
                rec = str(row["record"])
                fh.write(rec + "\n")
                fh.flush()  # a stopped scan keeps every line written so far
                scored += 1
                errors += json.loads(rec).get("error") is not None
    finally:
        if started:
            ray.shutdown()
    return ScanResult(scored, len(items) - len(todo), errors, time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 every input scored, 1 some inputs had errors, 2 usage or checkpoint error, 3 failure."""
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")

    def body() -> int:
        res = scan(
            args.inputs,
            args.out,
            args.checkpoint,
            args.address,
            args.runtime,
            args.batch_size,
            args.num_cpus,
            args.device,
            not args.no_provenance,
            not args.no_progress,
        )
        print(
            f"scan: {res.scored} scored, {res.skipped} already in {args.out}, {res.errors} with errors, {res.seconds:.1f} s",
            file=sys.stderr,
        )
        return ExitCode.INPUT_ERRORS if res.errors else ExitCode.OK

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
