"""The models on ONNX Runtime: export, graph directories, sessions, and ``load(..., runtime=...)``.

Graphs: the vision model (face crops float [B, 3, S, S] in [0, 1] -> embedding [B, D], logit [B]), the audio model
(windows float [B, L] -> embedding [B, E], logit [B]) and MTCNN's three face-detection networks
(:mod:`multimodal_df.vision.mtcnn_onnx`). With all of them, a detector on the ONNX runtime never imports PyTorch:
faces are found by the NumPy MTCNN cascade on ONNX Runtime, the branches run as graphs, fusion runs in NumPy
(:mod:`multimodal_df.fusion.numpy_fusion`) and the rest (decoding, calibration, sync) is NumPy code shared with
the PyTorch runtime, so both give the same verdicts within float rounding (max abs logit diff <= 1e-3; face boxes
agree to about a pixel). Explanations need gradients: they load the same checkpoint on PyTorch when asked for.

An ONNX graph directory is a complete checkpoint (``config.json`` and the safetensors, so the torch
runtime, fusion and explanations still load from it) plus the graphs and ``onnx.json``::

    {"format": "multimodal_df/onnx", "format_version": 1, "package_version": ..., "created_utc": ...,
     "opset": 17, "torch_version": ..., "config_sha256": ...,
     "graphs": {"vision": {"file": "vision.onnx", "sha256": ..., "weights_sha256": ..., "input": "x",
                           "input_shape": ["batch", 3, 224, 224], "max_abs_diff": 2e-6}, "audio": {...}},
     "faces": {"pnet": {"file": "pnet.onnx", "sha256": ..., "max_abs_diff": 7e-7}, "rnet": {...}, "onet": {...}},
     "runtime": {"vision": {"input_size": 224, "pool": "mean", "topk_frac": 0.25, "embed_dim": 1280},
                 "audio": {"sample_rate": 16000, "window_s": 2.0, "hop_s": 1.0, "embed_dim": 128}},
     "on_torch": []}

``weights_sha256`` ties each graph to the safetensors it came from: a graph exported from other weights is
refused rather than silently scoring with a different model. ``config_sha256`` ties ``runtime`` (what the graphs
need to know of the architectures, so that loading them never builds a PyTorch model) to ``config.json``.
Directories exported before ``faces`` existed still load: their branch graphs run beside PyTorch's MTCNN and
fusion. ``--runtime onnx`` on a checkpoint without graphs exports them once into a cache folder
(``$MULTIMODAL_DF_CACHE``, else ``$XDG_CACHE_HOME`` or ``~/.cache``, under
``multimodal_df/onnx/<digest of config.json and weights>``); a cache entry from before ``faces`` is re-exported.

The audio graph computes its log-mel with a DFT as a strided convolution (:func:`dft_logmel`): the
TorchScript exporter cannot write torchaudio's complex STFT. The wav2vec 2.0 sub-branch exports as it is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import __version__
from ..errors import CheckpointError, one_line
from ..vision.mtcnn_onnx import NETS, default_threads

if TYPE_CHECKING:
    import torch
    from torch import nn

    from .detector import Detector

MANIFEST = "onnx.json"
ONNX_FORMAT = "multimodal_df/onnx"
ONNX_FORMAT_VERSION = 1
OPSET = 17
RUNTIMES = ("torch", "onnx")
BRANCHES = ("vision", "audio")
CACHE_ENV = "MULTIMODAL_DF_CACHE"
MAX_DIFF = 1e-3
"""Largest |ONNX - PyTorch| on an embedding or logit that export accepts (float32 rounding is ~1e-5)."""
_OUTPUTS = ["embedding", "logit"]
_MAX_MANIFEST_BYTES = 1 << 20


# ------------------------------------------------------------------------------------------- exportable modules
def _torch() -> Any:
    import torch

    return torch


def dft_logmel(logmel: nn.Module) -> nn.Module:
    """A drop-in for :class:`multimodal_df.audio.features.LogMel` that ONNX can express.

    Same maths as torchaudio's ``MelSpectrogram`` (centred, reflect-padded, periodic Hann, power 2) followed by
    the log and the per-example standardisation, but the STFT is a strided ``conv1d`` with a fixed real/imaginary
    DFT basis [2F, 1, n_fft] (F = n_fft // 2 + 1): waveform [B, L] -> log-mel [B, n_mels, frames].
    """
    torch = _torch()
    from torch import nn
    from torch.nn import functional as F

    from ..audio.model import standardise_logmel

    spec, scale = logmel.mel.spectrogram, logmel.mel.mel_scale
    norm = getattr(logmel, "norm", "global")
    if spec.power != 2.0 or not spec.center or spec.normalized or spec.pad != 0 or spec.win_length != spec.n_fft:
        raise CheckpointError("the audio model's spectrogram settings have no ONNX equivalent here")

    class _DftLogMel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            n_fft = int(spec.n_fft)
            self.n_fft, self.hop, self.bins = n_fft, int(spec.hop_length), n_fft // 2 + 1
            # The basis in float64, then rounded once: it is the only place where precision is lost.
            n = torch.arange(n_fft, dtype=torch.float64)
            k = torch.arange(self.bins, dtype=torch.float64)
            angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
            win = spec.window.detach().to("cpu", torch.float64)
            basis = torch.cat([torch.cos(angle) * win, -torch.sin(angle) * win]).float().unsqueeze(1)
            self.register_buffer("basis", basis)
            self.register_buffer("fb", scale.fb.detach().to("cpu").float())

        def forward(self, wave: torch.Tensor) -> torch.Tensor:
            half = self.n_fft // 2
            x = F.pad(wave.float().unsqueeze(1), (half, half), mode="reflect")
            y = F.conv1d(x, self.basis, stride=self.hop)  # [B, 2F, frames]
            power = y[:, : self.bins] ** 2 + y[:, self.bins :] ** 2
            mel = torch.matmul(power.transpose(1, 2), self.fb).transpose(1, 2)
            return standardise_logmel(torch.log(mel + 1e-6), norm)

    return _DftLogMel()


def exportable(branch: str, model: nn.Module) -> nn.Module:
    """The module whose trace becomes ``branch``'s graph: the model itself for vision; for audio the model with
    :func:`dft_logmel` in place of its own log-mel (the weights are shared, not copied)."""
    from torch import nn

    if branch == "vision" or getattr(model, "logmel", None) is None:
        return model

    class _Audio(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.logmel = dft_logmel(model.logmel)

        def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model(wave, logmel=self.logmel(wave))

    return _Audio()


def example_input(branch: str, model: nn.Module, batch: int = 2, seed: int = 0) -> torch.Tensor:
    """A random input of the branch's shape: crops [B, 3, S, S] in [0, 1], or speech-level noise windows [B, L]."""
    torch = _torch()
    g = torch.Generator().manual_seed(seed)
    if branch == "vision":
        s = model.input_size
        return torch.rand(batch, 3, s, s, generator=g)
    return 0.1 * torch.randn(batch, model.window_samples, generator=g)


# ------------------------------------------------------------------------------------------- export
@dataclasses.dataclass
class GraphRecord:
    """One exported graph, as ``onnx.json`` lists it."""

    file: str
    sha256: str
    weights_sha256: str
    input: str
    input_shape: list[Any]
    max_abs_diff: float


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def export_branch(det: Detector, branch: str, path: Path, opset: int = OPSET) -> float:
    """Write ``branch``'s graph (dynamic batch axis) to ``path`` atomically; returns the largest |ONNX - PyTorch|
    over embedding and logit on a random batch of 3. Raises :class:`CheckpointError` past :data:`MAX_DIFF`."""
    import warnings

    torch = _torch()
    from .files import write_atomic

    model = getattr(det, branch)
    model.to("cpu").eval()  # export on the CPU in float32 whatever the detector runs on
    module = exportable(branch, model).eval()
    name = "x" if branch == "vision" else "wave"
    axes = {name: {0: "batch"}, "embedding": {0: "batch"}, "logit": {0: "batch"}}

    def write(tmp: str) -> None:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python control flow on constant shapes
            torch.onnx.export(
                module,
                (example_input(branch, model, 2),),
                tmp,
                input_names=[name],
                output_names=_OUTPUTS,
                dynamic_axes=axes,
                opset_version=opset,
                dynamo=False,  # the dynamo exporter needs onnxscript, which is not a dependency
            )

    try:
        write_atomic(path, write)
    except CheckpointError:
        raise
    except Exception as exc:
        raise CheckpointError(
            f"cannot export the {branch} model to ONNX: {type(exc).__name__}: {one_line(exc, 200)}"
        ) from None
    finally:
        model.to(det.device)
    diff = compare(det, branch, _session(path, ["CPUExecutionProvider"]), example_input(branch, model, 3, seed=1))
    if not diff <= MAX_DIFF:
        raise CheckpointError(f"the {branch} ONNX graph differs from PyTorch by {diff:.2e} (limit {MAX_DIFF:g})")
    return diff


def compare(det: Detector, branch: str, session: Any, x: torch.Tensor) -> float:
    """Largest ONNX - PyTorch difference of ``branch`` on input ``x`` (both on the CPU, float32): absolute on the
    logits, relative to the largest magnitude (when above 1) on the embedding."""
    torch = _torch()
    model = getattr(det, branch)
    device = next(model.parameters()).device
    with torch.no_grad():
        ref = [t.float().cpu().numpy() for t in model.to("cpu")(x)]
    model.to(device)
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    # Verdicts come from the logits (the last output), so their limit is absolute. Embeddings of standardised
    # multi-depth features reach magnitudes in the tens, where float32 rounding alone approaches 1e-3.
    last = len(ref) - 1
    return float(
        max(
            np.abs(a - b).max() / (1.0 if i == last else max(1.0, float(np.abs(b).max())))
            for i, (a, b) in enumerate(zip(got, ref))
        )
    )


def export_graphs(det: Detector, source: str | Path, out: str | Path, opset: int = OPSET) -> Path:
    """Write an ONNX graph directory at ``out`` for ``det`` loaded from checkpoint ``source``: its config.json and
    safetensors (copied unless ``out`` is ``source``), the branch graphs, then ``onnx.json`` last (atomically), so a
    directory with an ``onnx.json`` always has the graphs it names."""
    from .files import write_text_atomic

    src, dst = Path(source), Path(out)
    dst.mkdir(parents=True, exist_ok=True)
    if src.resolve() != dst.resolve():
        for f in ["config.json", *(f"{n}.safetensors" for n in ("vision", "audio", "fusion"))]:
            if (src / f).is_file():
                shutil.copyfile(src / f, dst / f)
        (dst / MANIFEST).unlink(missing_ok=True)  # a stale manifest must not vouch for graphs being rewritten
    graphs: dict[str, Any] = {}
    runtime: dict[str, Any] = {}
    for branch in BRANCHES:
        model = getattr(det, branch)
        if model is None:
            continue
        path = dst / f"{branch}.onnx"
        diff = export_branch(det, branch, path, opset)
        x = example_input(branch, model, 1)
        graphs[branch] = dataclasses.asdict(
            GraphRecord(
                file=path.name,
                sha256=sha256_file(path),
                weights_sha256=sha256_file(dst / f"{branch}.safetensors"),
                input="x" if branch == "vision" else "wave",
                input_shape=["batch", *x.shape[1:]],
                max_abs_diff=diff,
            )
        )
        runtime[branch] = _runtime_spec(branch, model)
    from ..vision.mtcnn_onnx import export_mtcnn

    try:
        face_diffs = export_mtcnn(dst, opset)
    except Exception as exc:
        raise CheckpointError(f"cannot export MTCNN to ONNX: {type(exc).__name__}: {one_line(exc, 200)}") from None
    faces = {
        n: {"file": f"{n}.onnx", "sha256": sha256_file(dst / f"{n}.onnx"), "max_abs_diff": face_diffs[n]} for n in NETS
    }
    import torch

    manifest = {
        "format": ONNX_FORMAT,
        "format_version": ONNX_FORMAT_VERSION,
        "package_version": __version__,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "opset": opset,
        "torch_version": torch.__version__,
        "config_sha256": sha256_file(dst / "config.json"),
        "graphs": graphs,
        "faces": faces,
        "runtime": runtime,
        "on_torch": [],
    }
    write_text_atomic(dst / MANIFEST, json.dumps(manifest, indent=2))
    return dst


def _runtime_spec(branch: str, model: Any) -> dict[str, Any]:
    """What the ONNX runtime needs to know of a branch's architecture besides its graph (see the module docstring)."""
    if branch == "vision":
        a = model.args
        return {
            "input_size": int(a.input_size),
            "pool": a.pool,
            "topk_frac": float(a.topk_frac),
            "embed_dim": int(model.embed_dim),
        }
    a = model.args
    return {
        "sample_rate": int(model.sample_rate),
        "window_s": float(a.window_s),
        "hop_s": float(a.hop_s),
        "embed_dim": int(model.embed_dim),
    }


def read_manifest(directory: str | Path) -> dict[str, Any] | None:
    """``onnx.json`` of ``directory``, checked against the files beside it; None when there is none.

    Raises :class:`CheckpointError` for a damaged manifest, a missing or altered graph, or graphs exported from
    weights other than the directory's safetensors.
    """
    d = Path(directory)
    path = d / MANIFEST
    if not path.is_file():
        return None
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise CheckpointError(f"{path}: too large for an ONNX manifest")
    try:
        m = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({one_line(exc, 200)})") from None
    if not isinstance(m, dict) or m.get("format") != ONNX_FORMAT or not isinstance(m.get("graphs"), dict):
        raise CheckpointError(f"{path}: not a multimodal_df ONNX manifest")
    if m.get("format_version") != ONNX_FORMAT_VERSION:
        raise CheckpointError(f"{path}: unknown format_version {m.get('format_version')!r}; re-export the graphs")
    for branch, g in m["graphs"].items():
        if branch not in BRANCHES or not isinstance(g, dict):
            raise CheckpointError(f"{path}: unknown graph {branch!r}")
        graph = d / f"{branch}.onnx"  # the name is fixed: a manifest never chooses which file is opened
        if not graph.is_file():
            raise CheckpointError(f"{d}: {graph.name} is missing")
        if sha256_file(graph) != g.get("sha256"):
            raise CheckpointError(f"{d}: {graph.name} does not match onnx.json (damaged or replaced)")
        weights = d / f"{branch}.safetensors"
        if weights.is_file() and sha256_file(weights) != g.get("weights_sha256"):
            raise CheckpointError(
                f"{d}: {graph.name} was exported from other weights than {weights.name}; "
                "re-run python -m multimodal_df.export"
            )
    faces = m.get("faces")
    if faces is not None:
        if (
            not isinstance(faces, dict)
            or set(faces) != set(NETS)
            or not all(isinstance(g, dict) for g in faces.values())
        ):
            raise CheckpointError(f"{path}: faces must name the graphs {', '.join(NETS)}")
        for net, g in faces.items():
            graph = d / f"{net}.onnx"  # fixed names here too
            if not graph.is_file():
                raise CheckpointError(f"{d}: {graph.name} is missing")
            if sha256_file(graph) != g.get("sha256"):
                raise CheckpointError(f"{d}: {graph.name} does not match onnx.json (damaged or replaced)")
    return m


def complete(manifest: dict[str, Any]) -> bool:
    """Whether a graph directory runs without PyTorch: face graphs, the runtime section and the config digest."""
    return all(k in manifest for k in ("faces", "runtime", "config_sha256"))


_RUNTIME_BOUNDS: dict[str, dict[str, tuple[type, float, float]]] = {
    "vision": {"input_size": (int, 16, 1024), "topk_frac": (float, 0, 1), "embed_dim": (int, 1, 8192)},
    "audio": {
        "sample_rate": (int, 4000, 96000),
        "window_s": (float, 0.05, 30),
        "hop_s": (float, 0.01, 30),
        "embed_dim": (int, 1, 8192),
    },
}


def _runtime_section(manifest: dict[str, Any], branch: str, where: str) -> dict[str, Any]:
    """``runtime[branch]`` of a manifest, checked: types and bounds as ``config.json``'s are checked."""
    sec = manifest["runtime"].get(branch) if isinstance(manifest["runtime"], dict) else None
    if not isinstance(sec, dict):
        raise CheckpointError(f"{where}: onnx.json has no runtime.{branch}")
    out: dict[str, Any] = {}
    for key, (kind, lo, hi) in _RUNTIME_BOUNDS[branch].items():
        v = sec.get(key)
        ok = not isinstance(v, bool) and isinstance(v, (int, float) if kind is float else int)
        if not ok or not lo <= v <= hi:
            raise CheckpointError(f"{where}: onnx.json runtime.{branch}.{key} = {v!r} is not a number in [{lo}, {hi}]")
        out[key] = kind(v)
    if branch == "vision":
        if sec.get("pool") not in ("mean", "max", "topk"):
            raise CheckpointError(f"{where}: onnx.json runtime.vision.pool = {sec.get('pool')!r} is unknown")
        out["pool"] = sec["pool"]
    return out


# ------------------------------------------------------------------------------------------- the cache
def cache_root() -> Path:
    """Where graphs exported on the fly live: ``$MULTIMODAL_DF_CACHE``, else the user's cache folder."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env) / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "multimodal_df" / "onnx"


def checkpoint_digest(directory: str | Path) -> str:
    """A short digest of a checkpoint's config.json and weights: the cache key of its graphs."""
    d = Path(directory)
    h = hashlib.sha256(__version__.encode())
    for f in ("config.json", "vision.safetensors", "audio.safetensors", "fusion.safetensors"):
        if (d / f).is_file():
            h.update(f.encode() + sha256_file(d / f).encode())
    return h.hexdigest()[:24]


def existing_graphs(checkpoint: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """The graph directory of ``checkpoint`` and its manifest, when there is one already: the checkpoint's own, else
    its entry in the cache. Reads files only (no model is built, PyTorch is not imported)."""
    ckpt = Path(checkpoint)
    m = read_manifest(ckpt)
    if m is not None:
        return ckpt, m
    if not (ckpt / "config.json").is_file():
        return None
    target = cache_root() / checkpoint_digest(ckpt)
    if not (target / MANIFEST).is_file():
        return None
    try:
        m = read_manifest(target)
    except CheckpointError:
        return None  # graphs_for rebuilds a damaged entry
    return (target, m) if m is not None else None


def graphs_for(det: Detector, checkpoint: str | Path) -> tuple[Path, bool]:
    """The directory holding ``checkpoint``'s graphs and whether they were exported just now: the checkpoint itself
    when it has an ``onnx.json``, else the cache (exported there on first use, atomically by renaming a finished
    folder into place, so concurrent processes never see half a directory)."""
    ckpt = Path(checkpoint)
    if read_manifest(ckpt) is not None:
        return ckpt, False
    target = cache_root() / checkpoint_digest(ckpt)
    if (target / MANIFEST).is_file():
        try:
            m = read_manifest(target)
            if m is not None and complete(m):
                return target, False
        except CheckpointError:
            pass
        # A damaged cache entry is rebuilt, never trusted; one from before the face graphs is rebuilt with them.
        shutil.rmtree(target, ignore_errors=True)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    except OSError as exc:
        raise CheckpointError(
            f"cannot write ONNX graphs to the cache {target.parent} ({exc.strerror}); set ${CACHE_ENV}"
        ) from None
    try:
        export_graphs(det, ckpt, work)
        try:
            os.replace(work, target)
        except OSError:
            if not (target / MANIFEST).is_file():  # another process finished first: use its copy
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    read_manifest(target)
    return target, True


# ------------------------------------------------------------------------------------------- sessions
def choose_providers(device: str | torch.device, available: list[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers for ``device``: on CUDA, TensorRT then CUDA where this onnxruntime build has
    them, always ending with the CPU (ONNX Runtime places what a provider cannot run on the next one)."""
    import onnxruntime as ort

    have = ort.get_available_providers() if available is None else available
    wanted = ["TensorrtExecutionProvider", "CUDAExecutionProvider"] if str(device).startswith("cuda") else []
    return [p for p in wanted if p in have] + ["CPUExecutionProvider"]


def _session(path: str | Path, providers: list[str]) -> Any:
    import sys

    import onnxruntime as ort

    opts = ort.SessionOptions()
    # As many threads as PyTorch uses (OMP_NUM_THREADS included): the two runtimes compare like for like, and a
    # server's worker processes do not each take every core. PyTorch is asked only when already imported.
    threads = sys.modules["torch"].get_num_threads() if "torch" in sys.modules else default_threads()
    opts.intra_op_num_threads = max(1, threads)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    # Idle pool threads sleep instead of spinning, as the face detector's sessions do (vision.mtcnn_onnx._session):
    # between calls they would otherwise busy-wait on cores the rest of the pipeline needs; results do not change.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=opts, providers=providers)


class OnnxBranch:
    """A branch forward on an ONNX Runtime session, called like the PyTorch model it replaces:
    ``branch(x)`` with x float (crops [B, 3, S, S] or windows [B, L]) -> (embedding [B, D], logit [B]), float32 on
    the CPU: NumPy arrays for an array, tensors for a tensor."""

    def __init__(self, path: str | Path, providers: list[str]) -> None:
        self.session = _session(path, providers)
        self.input = self.session.get_inputs()[0].name
        self.providers: list[str] = self.session.get_providers()

    def __call__(self, x: Any) -> tuple[Any, Any]:
        if isinstance(x, np.ndarray):
            emb, logit = self.session.run(_OUTPUTS, {self.input: np.ascontiguousarray(x, dtype=np.float32)})
            return emb, logit
        torch = _torch()
        arr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        emb, logit = self.session.run(_OUTPUTS, {self.input: arr})
        return torch.from_numpy(emb), torch.from_numpy(logit)


class OnnxModel:
    """A branch model on ONNX Runtime, standing in for the PyTorch one in a :class:`Detector`: called on a float
    array it returns (embedding [B, D], logit [B]) as NumPy arrays (see :class:`OnnxBranch`)."""

    def __init__(self, path: str | Path, providers: list[str], embed_dim: int) -> None:
        self.branch = OnnxBranch(path, providers)
        self.embed_dim = embed_dim
        width = self.branch.session.get_outputs()[0].shape[-1]
        if isinstance(width, int) and width != embed_dim:
            raise CheckpointError(f"{Path(path).name}: embeddings of {width}, onnx.json says {embed_dim}")

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.branch(x)


@dataclasses.dataclass
class OnnxVisionArgs:
    """What the ONNX vision model needs of the architecture: crop side (pixels) and the pooling of crop logits."""

    input_size: int
    pool: str = "mean"
    topk_frac: float = 0.25


class OnnxVision(OnnxModel):
    """The vision graph: crops float [B, 3, S, S] in [0, 1] -> (embedding [B, D], logit [B])."""

    def __init__(self, path: str | Path, providers: list[str], spec: dict[str, Any]) -> None:
        super().__init__(path, providers, spec["embed_dim"])
        self.args = OnnxVisionArgs(spec["input_size"], spec["pool"], spec["topk_frac"])
        shape = self.branch.session.get_inputs()[0].shape
        if [d for d in shape[1:] if isinstance(d, int)] not in ([3, self.input_size, self.input_size], []):
            raise CheckpointError(f"{Path(path).name}: input {shape}, onnx.json says {self.input_size} px crops")

    @property
    def input_size(self) -> int:
        return self.args.input_size

    @staticmethod
    def to_input(crops: np.ndarray, device: Any = None) -> np.ndarray:
        """uint8 RGB crops [K, S, S, 3] -> float32 [K, 3, S, S] in [0, 1] (as the PyTorch model's ``to_input``)."""
        x = np.ascontiguousarray(np.asarray(crops, np.uint8).transpose(0, 3, 1, 2), dtype=np.float32)
        x /= np.float32(255.0)
        return x

    def pool(self, logits: np.ndarray) -> float:
        """Per-crop logits [K] -> one clip logit, by the model's rule (mean, max, or mean of the top k)."""
        lg = np.asarray(logits, np.float32).reshape(-1)
        if self.args.pool == "max":
            return float(lg.max())
        if self.args.pool == "topk":
            k = max(1, int(round(self.args.topk_frac * lg.size)))
            return float(np.sort(lg)[::-1][:k].mean(dtype=np.float32))
        return float(lg.mean(dtype=np.float32))


@dataclasses.dataclass
class OnnxAudioArgs:
    """What the ONNX audio model needs of the architecture: windows of ``window_s`` every ``hop_s`` seconds."""

    window_s: float
    hop_s: float


class OnnxAudio(OnnxModel):
    """The audio graph: windows float [B, L] at ``sample_rate`` Hz -> (embedding [B, E], logit [B])."""

    def __init__(self, path: str | Path, providers: list[str], spec: dict[str, Any]) -> None:
        super().__init__(path, providers, spec["embed_dim"])
        self.sample_rate = spec["sample_rate"]
        self.args = OnnxAudioArgs(spec["window_s"], spec["hop_s"])

    @property
    def window_samples(self) -> int:
        return max(1, int(round(self.args.window_s * self.sample_rate)))

    @staticmethod
    def to_input(windows: np.ndarray, device: Any = None) -> np.ndarray:
        """float windows [W, L] -> contiguous float32."""
        return np.ascontiguousarray(windows, dtype=np.float32)


@dataclasses.dataclass
class RuntimeInfo:
    """What runs a detector's branch forwards: ``runtime`` "torch" or "onnx"; for ONNX the graph directory, the
    providers each session got, and whether the graphs were exported on this load."""

    runtime: str = "torch"
    graphs: str | None = None
    providers: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    exported: bool = False


def attach(det: Detector, directory: str | Path, providers: list[str] | None = None) -> RuntimeInfo:
    """Run ``det``'s branch forwards on the ONNX graphs in ``directory`` (checked by :func:`read_manifest`)."""
    manifest = read_manifest(directory)
    if manifest is None:
        raise CheckpointError(f"{directory}: no {MANIFEST} (export the graphs with python -m multimodal_df.export)")
    chosen = providers or choose_providers(det.device)
    forwards: dict[str, Callable[..., Any]] = {}
    info = RuntimeInfo("onnx", str(directory))
    for branch in BRANCHES:
        if getattr(det, branch) is None:
            continue
        if branch not in manifest["graphs"]:
            raise CheckpointError(f"{directory}: {MANIFEST} has no {branch} graph")
        try:
            forwards[branch] = OnnxBranch(Path(directory) / f"{branch}.onnx", chosen)
        except Exception as exc:
            raise CheckpointError(
                f"{directory}: ONNX Runtime cannot open {branch}.onnx ({type(exc).__name__}: {one_line(exc, 200)})"
            ) from None
        info.providers[branch] = forwards[branch].providers
    det.branch_forward = forwards
    det.runtime = info
    if manifest.get("faces") is not None:
        det.faces.mtcnn_graphs = str(directory)
        info.providers["faces"] = chosen
    return info


def onnx_device(device: str) -> str:
    """``auto``, ``cpu`` or ``cuda[:N]`` for the ONNX runtime, decided from the providers this onnxruntime has
    (PyTorch, which :func:`multimodal_df.pipeline.detector.resolve_device` asks, is not imported here)."""
    import onnxruntime as ort

    has_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    if device == "auto":
        return "cuda" if has_cuda else "cpu"
    if device.startswith("cuda") and not has_cuda:
        raise CheckpointError("--device cuda was asked for, but this onnxruntime has no CUDA execution provider")
    return device


def load_graphs(directory: str | Path, manifest: dict[str, Any], device: str = "auto") -> Detector:
    """A detector that runs entirely on the graphs of ``directory`` (a :func:`complete` manifest), without PyTorch:
    branch graphs and MTCNN on ONNX Runtime, fusion in NumPy; settings and calibrations from its ``config.json``,
    which must be the one the graphs were exported with."""
    from ..fusion.numpy_fusion import NumpyFusion
    from ..vision.faces import FaceDetector
    from .detector import Detector
    from .schema import read_settings

    d = Path(directory)
    if sha256_file(d / "config.json") != manifest["config_sha256"]:
        raise CheckpointError(
            f"{d}: config.json changed since the graphs were exported; re-run python -m multimodal_df.export"
        )
    settings = read_settings(d)
    dev = onnx_device(str(device))
    providers = choose_providers(dev)
    models: dict[str, Any] = {"vision": None, "audio": None}
    for branch, cls in (("vision", OnnxVision), ("audio", OnnxAudio)):
        if settings.meta[branch] is None:
            continue
        if branch not in manifest["graphs"]:
            raise CheckpointError(f"{d}: {MANIFEST} has no {branch} graph")
        models[branch] = cls(d / f"{branch}.onnx", providers, _runtime_section(manifest, branch, str(d)))
    fusion = None
    if settings.fusion is not None:
        weights = d / "fusion.safetensors"
        if not weights.is_file():
            raise CheckpointError(f"{d}: fusion.safetensors is missing")
        fusion = NumpyFusion.load(settings.fusion, weights)
    det = Detector(
        settings.decode,
        settings.faces,
        vision=models["vision"],
        audio=models["audio"],
        fusion=fusion,
        vision_meta=settings.meta["vision"],
        audio_meta=settings.meta["audio"],
        fusion_meta=settings.meta["fusion"],
        training_data=settings.training.get("data") if isinstance(settings.training.get("data"), dict) else {},
        training_config=settings.training.get("config") if isinstance(settings.training.get("config"), dict) else None,
        device=dev,
    )
    det.faces = FaceDetector(settings.faces, det.faces.crop_size, dev, mtcnn_graphs=str(d))
    det.branch_forward = {b: m.branch for b, m in models.items() if m is not None}
    det.runtime = RuntimeInfo("onnx", str(d), {b: m.branch.providers for b, m in models.items() if m is not None})
    det.runtime.providers["faces"] = providers
    return det


def load(checkpoint: str | Path | None = None, device: str = "auto", runtime: str = "torch") -> Detector:
    """The detector at ``checkpoint`` (default: the shipped model) with its branch forwards on ``runtime``.

    ``runtime="onnx"`` runs the models on ONNX Runtime (CPU; CUDA/TensorRT providers on a CUDA device when
    installed): from the checkpoint's own graphs when it has an ``onnx.json``, else from graphs exported once into
    the cache (:func:`cache_root`). Graphs already there (with the face graphs) load without importing PyTorch
    (:func:`load_graphs`); exporting them needs it. Raises :class:`CheckpointError` with a one-line reason.
    """
    from .checkpoint import default_checkpoint
    from .checkpoint import load as load_torch

    if runtime not in RUNTIMES:
        raise CheckpointError(f"unknown runtime {runtime!r} (choose from {', '.join(RUNTIMES)})")
    ckpt = str(checkpoint) if checkpoint is not None else default_checkpoint()
    if runtime == "torch" or ckpt is None:
        return load_torch(checkpoint, device)  # without a checkpoint, this says so
    with _onnx_errors(ckpt):
        # Graphs already there load without PyTorch; only an export (once per checkpoint) needs it.
        found = existing_graphs(ckpt)
        if found is not None and complete(found[1]):
            return load_graphs(found[0], found[1], device)
    det = load_torch(checkpoint, device)
    with _onnx_errors(ckpt):
        directory, exported = graphs_for(det, ckpt)
        manifest = read_manifest(directory)
        if manifest is not None and complete(manifest):
            det = load_graphs(directory, manifest, device)
            det.runtime.exported = exported
            return det
        # A graph directory exported before the face graphs existed: its branch graphs beside PyTorch's MTCNN.
        attach(det, directory).exported = exported
    return det


@contextlib.contextmanager
def _onnx_errors(ckpt: str) -> Iterator[None]:
    """Any failure to set up ONNX Runtime for ``ckpt`` becomes a :class:`CheckpointError` with a one-line reason."""
    try:
        yield
    except CheckpointError as exc:
        raise CheckpointError(f"cannot run checkpoint {ckpt} on ONNX Runtime: {exc}") from None
    except ImportError as exc:
        raise CheckpointError(f"--runtime onnx needs onnxruntime and onnx ({one_line(exc, 200)})") from None
    except Exception as exc:
        raise CheckpointError(
            f"cannot run checkpoint {ckpt} on ONNX Runtime: {type(exc).__name__}: {one_line(exc, 200)}"
        ) from None
