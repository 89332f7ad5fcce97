"""The device a training run uses."""
from __future__ import annotations


def pick_device(name: str = "auto"):
    """``auto``: CUDA when present, else the CPU; or a torch device name."""
    import torch
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)
