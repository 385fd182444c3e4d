"""The synthetic demo model of ``vad demo``: its recipe, how it is built and cached, and how it is checked."""
