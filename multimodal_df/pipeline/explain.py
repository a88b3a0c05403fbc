"""Why a verdict: Grad-CAM over face crops, saliency over the log-mel, a per-second timeline, an HTML report.

Every map is computed from the real model's gradients and scores:

* vision: Grad-CAM (Selvaraju et al., 2017) at the CNN's last convolution, for the fake logit;
* audio: |d logit / d log-mel| of the window (the mel path's view; wav2vec 2.0 has no spectrogram);
* timeline: each modality's calibrated P(fake) per second, with the fused verdict and threshold.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..audio.features import frame_windows
from ..audio.model import AudioModel
from ..vision.crops import square_region
from ..vision.model import VisionModel
from .outputs import Analysis, Prediction, format_p

if TYPE_CHECKING:
    from .detector import Detector


def last_conv(module: nn.Module) -> nn.Conv2d:
    """The last Conv2d of a backbone: the deepest layer that still has a spatial map."""
    convs = [m for m in module.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError("the vision backbone has no Conv2d layer for Grad-CAM")
    return convs[-1]


def gradcam(model: VisionModel, crops: np.ndarray, device: torch.device | str = "cpu") -> np.ndarray:
    """Grad-CAM heat maps for uint8 crops [K, S, S, 3] -> float [K, S, S] in [0, 1] (1 = most evidence of fake)."""
    layer = last_conv(model.backbone)
    store: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: tuple, out: torch.Tensor) -> None:
        out.retain_grad()
        store["act"] = out

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    maps = []
    try:
        for i in range(0, len(crops), 16):
            x = VisionModel.to_input(crops[i : i + 16], device).requires_grad_(True)
            with torch.enable_grad():
                _, logit = model(x)
                model.zero_grad(set_to_none=True)
                logit.sum().backward()
            act, grad = store["act"], store["act"].grad
            weights = grad.mean(dim=(2, 3), keepdim=True)
            cam = torch.relu((weights * act).sum(dim=1, keepdim=True))
            cam = nn.functional.interpolate(cam, size=crops.shape[1:3], mode="bilinear", align_corners=False)[:, 0]
            flat = cam.flatten(1)
            lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
            maps.append(((flat - lo) / (hi - lo).clamp_min(1e-8)).view_as(cam).detach().cpu().numpy())
    finally:
        handle.remove()
        model.train(was_training)
    return np.concatenate(maps) if maps else np.zeros((0, *crops.shape[1:3]))


def audio_saliency(
    model: AudioModel, window: np.ndarray, device: torch.device | str = "cpu"
) -> tuple[np.ndarray, np.ndarray] | None:
    """Log-mel [M, F] of one window [L] and |d logit / d log-mel| [M, F] scaled to [0, 1]; None without a mel path."""
    if model.logmel is None:
        return None
    was_training = model.training
    model.eval()
    try:
        wave = AudioModel.to_input(window[None], device)
        with torch.enable_grad():
            spec = model.logmel(wave).detach().requires_grad_(True)
            _, logit = model(wave, logmel=spec)
            logit.sum().backward()
        sal = spec.grad.abs()[0]
        sal = nn.functional.avg_pool2d(sal[None, None], 3, 1, 1)[0, 0]  # per-bin gradients are noisy
        sal = (sal / sal.max().clamp_min(1e-12)).cpu().numpy()
        return spec.detach()[0].cpu().numpy(), sal
    finally:
        model.train(was_training)


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [H, W] heat map in [0, 1] over uint8 RGB [H, W, 3] with a blue-to-red colour map."""
    import cv2

    h = cv2.resize(heat.astype(np.float32), (image.shape[1], image.shape[0]))
    colour = cv2.applyColorMap((h * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    a = alpha * h[..., None] ** 0.5  # weak evidence stays mostly transparent
    return np.clip(image * (1 - a) + colour * a, 0, 255).astype(np.uint8)


def frame_overlay(
    frame: np.ndarray, box: np.ndarray, crop_heat: np.ndarray, margin: float, p_fake: float, threshold: float = 0.5
) -> np.ndarray:
    """The full frame with the crop's heat map pasted back where the crop came from, and the face box
    (red when the crop's P(fake) reaches ``threshold``, green otherwise)."""
    import cv2

    out = frame.copy()
    x1, y1, x2, y2 = (float(v) for v in box)
    sq = square_region(box, margin)
    a, b, s = sq.x, sq.y, sq.side
    heat = cv2.resize(crop_heat.astype(np.float32), (s, s))
    H, W = frame.shape[:2]
    xa, ya, xb, yb = max(a, 0), max(b, 0), min(a + s, W), min(b + s, H)
    if xb > xa and yb > ya:
        out[ya:yb, xa:xb] = overlay(frame[ya:yb, xa:xb], heat[ya - b : yb - b, xa - a : xb - a])
    colour = (220, 40, 40) if p_fake >= threshold else (40, 170, 60)
    t = max(2, int(round(max(H, W) / 300)))
    cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), colour, t)
    cv2.putText(
        out,
        f"P(fake) {p_fake:.2f}",
        (int(x1), max(12, int(y1) - 6)),
        cv2.FONT_HERSHEY_SIMPLEX,
        max(0.4, H / 900),
        colour,
        max(1, t // 2),
    )
    return out


def png_bytes(image: np.ndarray) -> bytes:
    """uint8 RGB -> PNG bytes."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(image[..., ::-1]))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def timeline_png(pred: Prediction) -> bytes:
    """Per-second P(fake) of each modality with the fused verdict and the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 2.6))
    segs = pred.segments
    if segs:
        edges = [s.start for s in segs] + [segs[-1].end]
        for key, colour in (("vision", "#d1495b"), ("audio", "#00798c")):
            vals = [getattr(s, key) for s in segs]
            if any(v is not None for v in vals):
                y = [np.nan if v is None else v for v in vals]
                ax.stairs(y, edges, baseline=None, label=f"{key}", color=colour, linewidth=2)
    if pred.threshold is not None:
        ax.axhline(pred.threshold, color="0.3", ls=":", lw=1, label=f"threshold {pred.threshold:.2f}")
    if pred.p_fake is not None:
        ax.axhline(pred.p_fake, color="black", lw=1, alpha=0.6, label=f"fused {pred.p_fake:.2f} ({pred.label})")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("P(fake)")
    ax.legend(loc="upper left", fontsize=7, ncol=4, frameon=False)
    ax.set_title("Evidence over time")
    return _fig_png(fig)


def audio_png(
    pred: Prediction,
    logmel: np.ndarray | None,
    saliency: np.ndarray | None,
    start: float,
    window_s: float,
    nyquist_hz: float | None = None,
) -> bytes:
    """Per-window audio P(fake), and the most suspicious window's log spectrogram with its saliency.

    ``nyquist_hz``: given for a linear-frequency front end (``audio.frequency_scale: linear``), whose bands are
    evenly spaced, so the rows are labelled in Hz; without it they are mel band indices."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = 3 if logmel is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(8, 1.9 * rows + 0.6), squeeze=False)
    a = pred.audio
    ax = axes[0, 0]
    if a is not None:
        mids = (a.starts + a.ends) / 2
        ax.bar(
            mids,
            a.window_p,
            width=(a.ends - a.starts) * 0.9,
            color=["#d1495b" if p >= 0.5 else "#00798c" for p in a.window_p],
            alpha=0.8,
        )
        ax.set_ylim(0, 1)
        ax.set_ylabel("P(fake)")
        ax.set_xlabel("time (s)")
        ax.set_title("Audio: P(fake) per window")
    if logmel is not None and saliency is not None:
        top = nyquist_hz if nyquist_hz is not None else logmel.shape[0]
        ext = [start, start + window_s, 0, top]
        what, unit = ("log spectrogram", "frequency (Hz)") if nyquist_hz is not None else ("log-mel", "mel bin")
        axes[1, 0].imshow(logmel, origin="lower", aspect="auto", extent=ext, cmap="magma")
        axes[1, 0].set_title(f"{what} of the most suspicious window ({start:.1f}-{start + window_s:.1f} s)")
        axes[1, 0].set_ylabel(unit)
        axes[2, 0].imshow(saliency, origin="lower", aspect="auto", extent=ext, cmap="inferno", vmin=0, vmax=1)
        axes[2, 0].set_title(f"where the model looks: |d logit / d {what}|")
        axes[2, 0].set_ylabel(unit)
        axes[2, 0].set_xlabel("time (s)")
    fig.tight_layout()
    return _fig_png(fig)


@dataclass
class Explanation:
    """Images (PNG bytes) behind a verdict; names are stable file names."""

    images: dict[str, bytes] = field(default_factory=dict)
    captions: dict[str, str] = field(default_factory=dict)

    def data_uris(self) -> dict[str, str]:
        return {k: "data:image/png;base64," + base64.b64encode(v).decode() for k, v in self.images.items()}

    def save(self, directory: str | Path, pred: Prediction) -> Path:
        """Write every PNG and a self-contained ``report.html`` (images inlined) into ``directory``."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        for name, data in self.images.items():
            (d / name).write_bytes(data)
        (d / "report.html").write_text(report_html(pred, self))
        return d / "report.html"


def explain(det: Detector, analysis: Analysis, top_k: int = 4) -> Explanation:
    """The explanation images for an analysed file (``det``: the detector that analysed it); empty on an error."""
    pred, clip, track = analysis.prediction, analysis.clip, analysis.track
    ex = Explanation()
    if pred.error:
        return ex
    ex.images["timeline.png"] = timeline_png(pred)
    ex.captions["timeline.png"] = "P(fake) per second for each modality; the black line is the fused verdict."
    v = pred.vision
    if (
        v is not None
        and det.vision is not None
        and clip is not None
        and clip.frames is not None
        and track is not None
        and len(track)
    ):
        order = np.argsort(-v.crop_logits)[:top_k]  # the crops that drove the score most
        cams = gradcam(det.vision, np.asarray(track.crops)[order], det.device)
        for rank, (k, cam) in enumerate(zip(order, cams)):
            crop = np.asarray(track.crops[k])
            ex.images[f"face_{rank}.png"] = png_bytes(np.concatenate([crop, overlay(crop, cam)], axis=1))
            ex.captions[f"face_{rank}.png"] = (
                f"t = {track.times[k]:.2f} s, P(fake) {v.crop_p[k]:.2f}: face crop and Grad-CAM"
            )
            frame = clip.frames[int(track.frame_index[k])]
            ex.images[f"frame_{rank}.png"] = png_bytes(
                frame_overlay(
                    frame, track.boxes[k], cam, det.face_cfg.margin, float(v.crop_p[k]), det.vision_meta.threshold
                )
            )
            ex.captions[f"frame_{rank}.png"] = f"t = {track.times[k]:.2f} s: the heat map on the full frame"
    a = pred.audio
    if a is not None and det.audio is not None and clip is not None and clip.waveform is not None:
        cfg = det.audio.args
        windows, starts = frame_windows(clip.waveform, clip.sample_rate, cfg.window_s, cfg.hop_s)
        k = int(np.argmax(a.window_logits))
        sal = audio_saliency(det.audio, windows[k], det.device)
        nyquist = cfg.sample_rate / 2 if cfg.frequency_scale == "linear" else None
        ex.images["audio.png"] = audio_png(pred, *(sal or (None, None)), float(starts[k]), cfg.window_s, nyquist)
        ex.captions["audio.png"] = (
            "Audio evidence: P(fake) per window; the most suspicious window's log spectrogram and saliency."
        )
    return ex


_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:960px;margin:2rem auto;padding:0 1rem;color:#222}
.verdict{padding:1rem 1.25rem;border-radius:10px;color:#fff;font-size:1.4rem;font-weight:600}
.fake{background:#c0392b}.real{background:#1e8449}.error{background:#7f8c8d}
table{border-collapse:collapse;margin:1rem 0}td,th{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}
figure{margin:1rem 0}figure img{max-width:100%;border:1px solid #ddd;border-radius:6px}.grid figure img{width:100%}figcaption{color:#555;font-size:.9rem}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(280px,1fr));gap:1rem}.note{color:#8a6d3b}
.prov td:first-child{color:#666;white-space:nowrap;vertical-align:top}.prov ul{margin:0;padding-left:1.1rem}
.drove{padding:.5rem .8rem;border-radius:8px;background:#f3f4f6}.drove.provenance{background:#fdecea;color:#8a1c12}
"""
_C2PA_WORDS = {
    "absent": "none found",
    "not_checked": "not checked",
    "valid": "valid: intact, signer trusted",
    "untrusted_signer": "intact, but the signer is not on any trust list (anyone can make such a certificate)",
    "invalid": "no longer valid: the file changed after signing or the signature fails",
    "unreadable": "present but unreadable",
}


def _term(value: str) -> str:
    """Last segment of a digital source type URI (``trainedAlgorithmicMedia``)."""
    from ..provenance.vocab import source_type_term

    return source_type_term(value) if value.startswith("http") else value


def _provenance_html(pred: Prediction) -> str:
    """The report's provenance section: C2PA, AI declarations, metadata, watermark, and what decided the label."""
    e = html.escape
    ev, rep = pred.evidence, pred.provenance
    if rep is None:
        return "<h2>Provenance</h2><p>Not checked: the provenance stage was switched off.</p>"

    def ul(items: list[str]) -> str:
        return "<ul>" + "".join(f"<li>{x}</li>" for x in items) + "</ul>" if items else "–"

    drove = ""
    if ev is not None and ev.label_from == "provenance":
        # The reason itself stands right under the verdict at the top of the page.
        drove = (
            '<p class="drove provenance"><strong>The label comes from provenance</strong> (the reason is under '
            "the verdict above); P(fake) is still the model's own score.</p>"
        )
    elif ev is not None and ev.label_from == "model":
        drove = f'<p class="drove model"><strong>The label comes from the model:</strong> {e(ev.reason)}.</p>'
    c = rep.c2pa
    c2pa = e(_C2PA_WORDS.get(c.state, c.state))
    if c.present:
        if c.signer:
            org = f" ({e(c.signer_org)})" if c.signer_org and c.signer_org != c.signer else ""
            c2pa += f"<br>signer: {e(c.signer)}{org}"
        if c.claim_generator:
            c2pa += f"<br>made with: {e(c.claim_generator)}"
        if c.failure_codes:
            c2pa += "<br>codes: " + e(", ".join(c.failure_codes))
    rows = [("Content Credentials (C2PA)", c2pa)]
    if c.actions:
        rows.append(
            (
                "C2PA actions",
                ul(
                    [
                        e(a.action)
                        + (f" ({e(_term(a.digital_source_type))})" if a.digital_source_type else "")
                        + (f" by {e(a.software_agent)}" if a.software_agent else "")
                        + ("" if a.active else " (earlier history)")
                        for a in c.actions[:12]
                    ]
                ),
            )
        )
    decls = [
        f"{e(d.where)}: {e(_term(d.value))} ({'inside a signed C2PA manifest' if d.signed else 'unsigned'})"
        for d in rep.ai_declarations[:8]
    ]
    rows.append(("AI declarations", ul(decls)))
    m = rep.metadata
    hints = [f"digital source type: {e(_term(t))}" for t in m.digital_source_types]
    for k, v in (
        ("software", m.software),
        ("camera make", m.make),
        ("camera model", m.model),
        ("creator tool", m.creator_tool),
        ("AI system", m.ai_system),
    ):
        if v:
            hints.append(f"{k}: {e(v)}")
    hints += [f"{e(h.field)} names {e(h.generator)}" for h in m.generator_hints if h.generator]
    rows.append(
        (
            "Metadata",
            ul(hints)
            if hints
            else "nothing about origin (stripping metadata is trivial, so its absence means nothing)",
        )
    )
    w = rep.watermark
    if w.detected:
        wm = ul(
            [
                f"{e(s.scheme)}: {s.bit_accuracy:.0%} of {s.n_bits} bits match"
                + (f" (frame {s.frame_index})" if s.frame_index is not None else "")
                for s in w.detected
            ]
        )
    elif w.checked:
        wm = (
            f"no known generator watermark found in {w.images_checked} image(s) "
            "(re-encoding or resizing removes it, so a miss means little)"
        )
    else:
        wm = "not checked"
    rows.append(("Invisible watermark", wm))
    notes = "".join(f'<p class="note">{e(n)}</p>' for n in rep.evidence().notes)
    table = "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows)
    return f'<h2>Provenance: what the file says about itself</h2><div class="prov">{drove}<table>{table}</table>{notes}</div>'


def report_html(pred: Prediction, ex: Explanation) -> str:
    """One self-contained HTML page (images inlined): readable offline, safe to mail around."""
    e = html.escape
    uris = ex.data_uris()
    if pred.error:
        head = f'<div class="verdict error">Could not analyse: {e(pred.error)}</div>'
    else:
        head = f'<div class="verdict {e(pred.label or "")}">{e((pred.label or "").upper())}: P(fake) = {format_p(pred.p_fake)} <small>(threshold {pred.threshold:.3f})</small></div>'
        if pred.evidence is not None and pred.evidence.label_from == "provenance":
            # The label is not the score against the threshold here; say so right under it.
            head += f'<p class="drove provenance">Label from provenance: {e(pred.evidence.reason)}.</p>'
    rows = []
    for name, out in (("vision", pred.vision), ("audio", pred.audio)):
        if out is None:
            rows.append(f"<tr><td>{name}</td><td>–</td><td>missing</td></tr>")
        else:
            detail = f"{out.faces}/{out.frames} frames with a face" if name == "vision" else f"{out.windows} windows"
            rows.append(f"<tr><td>{name}</td><td>{format_p(out.p_fake)}</td><td>{e(detail)}</td></tr>")
    faces = getattr(pred, "faces", None) or []
    if faces:
        rows.append(
            "".join(
                f"<tr><td>face {i + 1}</td><td>{format_p(f['p_fake'])}</td><td>box {e(str([round(x) for x in f['box']]))}</td></tr>"
                for i, f in enumerate(faces)
            )
        )
    notes = list(pred.notes) + (pred.info.notes if pred.info else [])

    def fig(name: str) -> str:
        return f'<figure><img src="{uris[name]}" alt="{e(name)}"><figcaption>{e(ex.captions.get(name, ""))}</figcaption></figure>'

    faces_html = "".join(fig(n) for n in sorted(uris) if n.startswith("face_"))
    frames_html = "".join(fig(n) for n in sorted(uris) if n.startswith("frame_"))
    body = [
        f"<h1>multimodal_df report</h1><p><code>{e(pred.path)}</code></p>",
        head,
        "<table><tr><th>modality</th><th>P(fake)</th><th>evidence</th></tr>" + "".join(rows) + "</table>",
        "".join(f'<p class="note">Note: {e(n)}</p>' for n in notes),
        _provenance_html(pred),
        fig("timeline.png") if "timeline.png" in uris else "",
        f"<h2>Faces: where the vision model looks</h2><div class='grid'>{faces_html}</div><div class='grid'>{frames_html}</div>"
        if faces_html
        else "",
        "<h2>Voice</h2>" + fig("audio.png") if "audio.png" in uris else "",
        "<p><small>Heat maps are Grad-CAM for the 'fake' output; red marks what pushed the score towards fake. "
        "Scores are calibrated probabilities from the model in use, not proof.</small></p>",
    ]
    return f"<!doctype html><html><head><meta charset='utf-8'><title>multimodal_df: {e(Path(pred.path).name)}</title><style>{_STYLE}</style></head><body>{''.join(body)}</body></html>"
