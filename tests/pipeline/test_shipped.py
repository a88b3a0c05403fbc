"""The model that ships inside the package: present, small, self-describing, used by default."""

from __future__ import annotations

import json
from pathlib import Path

from multimodal_df import predict
from multimodal_df.pipeline.checkpoint import CHECKPOINT_ENV, default_checkpoint
from multimodal_df.pipeline.detector import Detector

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "multimodal_df" / "shipped"


def test_shipped_model_is_small_safetensors_and_real_only() -> None:
    files = sorted(p.name for p in SHIPPED.iterdir())
    assert "config.json" in files and any(f.endswith(".safetensors") for f in files)
    assert not any(f.endswith((".pt", ".pth", ".pkl", ".bin")) for f in files)  # nothing to unpickle
    assert sum(p.stat().st_size for p in SHIPPED.iterdir()) <= 50 * 2**20
    cfg = json.loads((SHIPPED / "config.json").read_text())
    td = cfg["training_data"] if cfg.get("format_version", 1) == 1 else cfg["training"]["data"]
    # Trained from real media only: every manifest row behind it is real.
    for part in (td["vision"], td["audio"]):
        splits = part["manifest"].values()
        assert sum(s["fake"] for s in splits) == 0 and sum(s["real"] for s in splits) > 0
    assert td["audio"]["audio_holdout"] not in td["audio"]["audio_generators"]
    det = Detector.load(SHIPPED, "cpu")
    assert det.vision is not None and det.audio is not None and det.fusion is not None


def test_predict_without_checkpoint_uses_the_shipped_model(monkeypatch, capsys) -> None:
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    assert default_checkpoint() == str(SHIPPED)
    code = predict.main([str(ROOT / "multimodal_df" / "examples" / "real.mp4"), "--json"])
    assert code in (0, 1)
    rec = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert rec["error"] is None and 0.0 <= rec["p_fake"] <= 1.0
    assert rec["modalities"]["vision"]["faces"] > 0 and rec["modalities"]["audio"]["windows"] > 0
