"""Frames to CLIP features: preprocessing, the CLIP image encoder and its weights, prefetch, `vad extract`."""
