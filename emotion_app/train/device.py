"""The device a training run uses."""
from __future__ import annotations


def pick_device(name: str = "auto"):
    """``auto``: CUDA when present (in a distributed run, this rank's GPU), else the CPU;
    or a torch device name."""
    import torch

    from .distributed import local_device
    return local_device() if name == "auto" else torch.device(name)
