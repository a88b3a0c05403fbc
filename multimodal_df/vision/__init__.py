"""Vision branch: faces found and followed (:mod:`.faces`), cut into square crops (:mod:`.crops`) and scored
by a CNN (:mod:`.model`) built on a registered backbone (:mod:`.backbones`). Imports nothing of the audio branch."""
