"""The pipeline: the detector (:mod:`.detector`), its typed results (:mod:`.outputs`), checkpoints
(:mod:`.checkpoint`), calibration (:mod:`.calibration`) and explanations (:mod:`.explain`)."""
