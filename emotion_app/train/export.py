"""What a model folder stores of a trained network: fp16 tensors."""
from __future__ import annotations

from ..models.base import load_weights


def fp16_state(net, exclude: tuple[str, ...] = ()) -> dict:
    """The state dict as fp16 (BatchNorm counters and ``exclude`` dropped): what
    ``model.safetensors`` holds."""
    return {k: v.detach().half().cpu().contiguous() for k, v in net.state_dict().items()
            if v.is_floating_point() and k not in exclude}


def load_fp16_state(net, state: dict) -> None:
    load_weights(net, state)


def round_to_fp16(net) -> None:
    """Round the network's weights to fp16 in place, so that what is scored is exactly
    what is stored."""
    load_weights(net, fp16_state(net), allow_missing=tuple(k for k, v in net.state_dict().items()
                                                            if not v.is_floating_point()))
