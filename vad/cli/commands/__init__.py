"""Command modules of the ``vad`` CLI, one per area."""
