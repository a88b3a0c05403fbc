"""Fusion: branch outputs (and the audio-visual sync measure, :mod:`.sync`) -> one fused logit (:mod:`.model`).
Reads the branches' outputs through small protocols; imports neither branch."""
