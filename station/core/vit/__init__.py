"""The learned engine's parts: the grid-aligned timm ViT, its training loop and its attention maps."""
