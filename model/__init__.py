"""DSANet for weakly supervised video anomaly detection (AAAI 2026), as a library.

Needs torch (and open_clip for the text tower). Knows nothing of HTTP, Redis or video files.
"""

from model.config import PRESET_NAMES, DSANetConfig, load_preset

__all__ = ["PRESET_NAMES", "DSANetConfig", "load_preset"]
