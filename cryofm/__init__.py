"""cryofm: self-supervised foundation models (DINOv2) for cryo-EM images."""

__version__ = "0.1.0"
