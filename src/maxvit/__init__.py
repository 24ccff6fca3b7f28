"""MaxViT (Multi-Axis Vision Transformer) reproduced from scratch on Tiny ImageNet."""

__version__ = "0.1.0"
