"""The model-card table that ``evaluate`` writes: real-world rows per domain and source, pseudo-fake rows with the
held-out generators marked and their calibration error."""

from __future__ import annotations

from multimodal_df.evaluation.report import model_card_table


def test_model_card_table_rows() -> None:
    report = {
        "domains": {
            "audio": {
                "n_real": 22,
                "n_fake": 25,
                "fused_auc": 0.61,
                "vision_auc": float("nan"),
                "audio_auc": 0.61,
                "ece": 0.2,
            }
        },
        "categories": {
            "audio:tortoise": {"label": "fake", "files": 8, "fused_auc": 0.7, "vision_auc": None, "audio_auc": 0.7},
            "audio:grid": {"label": "real", "files": 8, "fused_auc": None, "vision_auc": None, "audio_auc": None},
        },
    }
    validation = {
        "holdout_generator": "vocoder_subpixel",
        "holdout_face_generator": "decoder_pixelshuffle",
        "vision_test_people": {
            "real": {"n": 40},
            "self_blend": {"auc": 0.99, "n": 40},
            "decoder_pixelshuffle": {"auc": 0.8, "n": 40},
            "ece_holdout": 0.12,
        },
        "audio_test_speakers": {"real": {"n": 30}, "vocoder_subpixel": {"auc": 0.75, "n": 30}, "ece_holdout": 0.2},
    }
    table = model_card_table(report, validation)
    lines = table.splitlines()
    assert any(line.startswith("| real-world: audio | all | 22 | 25 | 0.610") for line in lines)
    assert any("| tortoise |" in line and "0.700" in line for line in lines)
    assert not any("grid" in line for line in lines)  # real categories are not rows of fakes
    held = [line for line in lines if "(held out)" in line]
    assert len(held) == 2 and "0.120" in held[0] and "0.200" in held[1]
    assert any("self_blend" in line and "(held out)" not in line for line in lines)
    # Without validation figures only the real-world rows remain.
    assert "pseudo-fakes" not in model_card_table(report)
