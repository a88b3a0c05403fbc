"""Audio branch: fixed-length windows and a log-mel front end (:mod:`.features`), scored by a log-mel CNN and
a wav2vec 2.0 encoder (:mod:`.model`). Imports nothing of the vision branch."""
