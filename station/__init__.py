"""Inspection Station: a camera-side visual inspection station (OK / NG / REVIEW) with RT and ViT engines."""

__version__ = "0.1.0"
