"""Training DSANet (spec D) on VadCLIP-format features: data, losses, optimiser, the trainer, the CLIP text source.

Beside the network, not in it: :mod:`model` never imports this package.
"""
