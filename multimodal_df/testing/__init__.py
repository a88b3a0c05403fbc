"""Synthetic test media (:mod:`.fixtures`): small MP4s of a moving face with speech-like audio, with
controllable artifacts, for tests, the fixture demo model and benchmarks."""
