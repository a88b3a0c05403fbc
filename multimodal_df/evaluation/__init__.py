"""Evaluation: detection metrics (:mod:`.metrics`) and the ROC-AUC reports of ``python -m multimodal_df.evaluate``
(:mod:`.report`)."""
