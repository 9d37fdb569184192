"""Checkpoint files: the original dict format (:mod:`.format`), where named models are found
(:mod:`.registry`), and loading one into a model (:mod:`.loading`)."""
