"""What a model folder stores of a trained network: fp16 tensors."""
from __future__ import annotations

import torch

from ..models.base import load_weights


def fp16_state(net, exclude: tuple[str, ...] = ()) -> dict:
    """The state dict as fp16 (BatchNorm counters and ``exclude`` dropped): what
    ``model.safetensors`` holds. Always a copy, also of tensors already in fp16, so a
    kept best epoch never moves with further training."""
    return {k: v.detach().to(dtype=torch.float16, copy=True).cpu().contiguous()
            for k, v in net.state_dict().items() if v.is_floating_point() and k not in exclude}


def round_to_fp16(net) -> None:
    """Round the network's weights to fp16 in place, so that what is scored is exactly
    what is stored."""
    load_weights(net, fp16_state(net), allow_missing=tuple(k for k, v in net.state_dict().items()
                                                            if not v.is_floating_point()))
