"""Face expression models and the image pipeline: photo -> faces -> emotions.

Every network sees what FER-2013 shows: a grayscale face, 48x48, tightly framed.
Crops of any size or colour are first brought to that (gray, area-resized to 48x48)
and only then upsampled to the network's input size, exactly as in training, so a
photo's face and a dataset crop reach the network in the same form.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .inputs import InputError, check_file
from .labels import LABELS
from .pipeline import error_result, label_probs, make_result, resolve
from .registry import Model, ModelEntry, register_architecture

FER_SIZE = 48
IMAGE_KINDS = ("jpg", "jpeg", "png", "bmp", "webp", "gif", "tif", "tiff")
MAX_IMAGE_MB = 25
MAX_PIXELS = 50_000_000
BATCH = 16  # on a CPU, small batches keep activations in cache: fastest per crop
# A face box covering this much of the image means the image is a face crop already
# (FER-2013 style, as external evaluation feeds them). Re-cropping such an image costs
# accuracy (measured on 600 PublicTest crops: 71.0% classified as given, 64.2% re-cropped),
# and only 1% of FER-2013 crops have a face box smaller than this.
READY_CROP_AREA = 0.3
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


# --- networks -------------------------------------------------------------------------

def _gray_input(backbone, channels: int, mean, std):
    """Wrap a backbone so it takes gray faces in [0, 1] and normalises them itself."""
    import torch
    from torch import nn

    class GrayInput(nn.Module):
        def __init__(self):
            super().__init__()
            self.backbone = backbone
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

        def forward(self, x):
            return self.backbone((x.expand(-1, channels, -1, -1) - self.mean) / self.std)

    return GrayInput()


def _mobilenet_v2(size: int):
    from torchvision.models import mobilenet_v2
    return _gray_input(mobilenet_v2(num_classes=len(LABELS), dropout=0.3), 3, IMAGENET_MEAN, IMAGENET_STD)


def _efficientnet_lite0(size: int):
    from efficientnet_lite_pytorch import EfficientNet
    net = EfficientNet.from_name("efficientnet-lite0", num_classes=len(LABELS), image_size=size,
                                 dropout_rate=0.3)
    return _gray_input(net, 3, IMAGENET_MEAN, IMAGENET_STD)


def _fer_vgg(size: int, width: int = 48):
    """A VGG-style CNN for 48x48 gray faces (four conv pairs, global pooling): the
    classic from-scratch FER architecture, different enough from the ImageNet nets
    to make the ensemble's errors less correlated."""
    from torch import nn
    layers, channels = [], 1
    for out in (width, 2 * width, 4 * width, 8 * width):
        for i in range(2):
            layers += [nn.Conv2d(channels if i == 0 else out, out, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out), nn.ReLU(inplace=True)]
        layers.append(nn.MaxPool2d(2))
        channels = out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.4), nn.Linear(channels, len(LABELS))]
    return _gray_input(nn.Sequential(*layers), 1, (0.5,), (0.25,))


NETWORKS = {"mobilenet-v2": _mobilenet_v2, "efficientnet-lite0": _efficientnet_lite0, "fer-vgg": _fer_vgg}


def build_network(architecture: str, size: int):
    return NETWORKS[architecture](size)


# --- crops -> probabilities -----------------------------------------------------------

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


class CropClassifier(Model):
    """One trained network with its input size and whether to average a mirrored view."""

    def __init__(self, net, size: int, tta_flip: bool, device: str = "cpu"):
        self.net, self.size, self.tta_flip, self.device = net.eval().to(device), size, tta_flip, device

    def predict_gray(self, gray: np.ndarray) -> np.ndarray:
        """(N, 48, 48) uint8 faces -> (N, 7) probabilities, in batches."""
        import torch
        out = []
        with torch.inference_mode():
            for start in range(0, len(gray), BATCH):
                chunk = torch.from_numpy(np.ascontiguousarray(gray[start:start + BATCH])).to(self.device)
                x = gray_batch_to_input(chunk, self.size)
                if self.tta_flip:  # the face and its mirror image in one pass
                    x = torch.cat([x, x.flip(3)])
                p = self.net(x.contiguous(memory_format=torch.channels_last)).float().softmax(1)
                if self.tta_flip:
                    p = (p[:len(chunk)] + p[len(chunk):]) / 2
                out.append(p.cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, len(LABELS)), np.float32)

    def predict_proba(self, crops) -> np.ndarray:
        return self.predict_gray(np.stack([to_fer_gray(c) for c in crops]) if len(crops) else
                                 np.zeros((0, FER_SIZE, FER_SIZE), np.uint8))


# Convolution -> BatchNorm pairs that EfficientNet-Lite's modules call by attribute name.
_CONV_BN_ATTRIBUTES = (("_conv_stem", "_bn0"), ("_expand_conv", "_bn0"), ("_depthwise_conv", "_bn1"),
                       ("_project_conv", "_bn2"), ("_conv_head", "_bn1"))


def for_inference(net):
    """Fold every BatchNorm into the convolution before it and use channels-last memory:
    the same outputs (to ~1e-6) at about twice the CPU speed. Inference only."""
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    net.eval()
    for module in list(net.modules()):
        pairs = list(_CONV_BN_ATTRIBUTES)
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            pairs += list(zip(names, names[1:]))
        for conv, bn in pairs:
            first, second = getattr(module, conv, None), getattr(module, bn, None)
            if isinstance(first, nn.Conv2d) and isinstance(second, nn.BatchNorm2d):
                setattr(module, conv, fuse_conv_bn_eval(first, second))
                setattr(module, bn, nn.Identity())
    return net.to(memory_format=torch.channels_last)


def load_state(net, tensors: dict) -> None:
    """Load fp16-stored weights into a float32 network; only BN counters may be absent."""
    missing, unexpected = net.load_state_dict({k: v.float() for k, v in tensors.items()}, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"weights do not fit the network: missing {missing[:5]}, unexpected {unexpected[:5]}")


def load_crop_classifier(entry: ModelEntry) -> CropClassifier:
    from safetensors.torch import load_file
    size = int(entry.config["input_size"])
    net = build_network(entry.architecture, size)
    load_state(net, load_file(str(entry.folder / "model.safetensors")))
    return CropClassifier(for_inference(net), size, bool(entry.config.get("tta_flip", False)))


for _name in NETWORKS:
    register_architecture(_name)(load_crop_classifier)


def classify_crops(crops, model: str | None = None) -> np.ndarray:
    """(N, 7) probabilities for face crops (any size, gray or RGB); used by video too."""
    clf = resolve("image", model)
    return clf.predict_proba(list(crops)) if len(crops) else np.zeros((0, len(LABELS)))


# --- images -> results ----------------------------------------------------------------

def load_image(path) -> np.ndarray:
    """An uploaded image as RGB uint8, upright per its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError
    p = check_file(path, IMAGE_KINDS, MAX_IMAGE_MB)
    try:
        with Image.open(p) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InputError(f"{path}: image is {im.width}x{im.height}, over {MAX_PIXELS // 1_000_000} megapixels")
            im = ImageOps.exif_transpose(im)
            return np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from exc


def predict(paths: list, model: str | None = None, min_confidence: float = 0.9, **_) -> list[dict]:
    """Classify every face of every image in one batch. An image that is a face crop
    already (no face found, or one that fills it) is classified whole, with a note."""
    from .faces import detect_faces
    clf = resolve("image", model)
    results: list[dict | None] = [None] * len(paths)
    pending = []  # (index, faces, crops, note)
    for i, path in enumerate(paths):
        try:
            rgb = load_image(path)
            faces = detect_faces(rgb, min_confidence=min_confidence)
        except InputError as exc:
            results[i] = error_result(str(path), exc)
            continue
        if not faces:
            pending.append((i, [], [rgb], "no face detected: the whole image was classified as one face crop"))
        elif faces[0].area >= READY_CROP_AREA * rgb.shape[0] * rgb.shape[1]:
            pending.append((i, faces[:1], [rgb], "the face fills the image: classified as a ready-made face crop"))
        else:
            pending.append((i, faces, [f.crop for f in faces], None))
    crops = [c for _, _, cs, _ in pending for c in cs]
    probs = clf.predict_proba(crops) if crops else np.zeros((0, len(LABELS)))
    offset = 0
    for i, faces, cs, note in pending:
        p, offset = probs[offset:offset + len(cs)], offset + len(cs)
        entries = [{"box": [round(float(v), 1) for v in f.box], "confidence": round(float(f.confidence), 4),
                    **label_probs(q)} for f, q in zip(faces, p)]
        results[i] = make_result(str(paths[i]), p[0], clf.entry.ref, face_detected=bool(faces), faces=entries,
                                 **({"notes": [note]} if note else {}))
    return results


def draw_faces(image, faces: list[dict]) -> np.ndarray:
    """The image (a path or an RGB array) with each face's box and top emotion drawn on it,
    for the app's Image tab; ``faces`` is a result's "faces" list."""
    import cv2
    out = np.ascontiguousarray(load_image(image) if isinstance(image, (str, Path)) else image, dtype=np.uint8).copy()
    thickness = max(2, round(max(out.shape[:2]) / 400))
    scale = max(0.5, max(out.shape[:2]) / 1200)
    for face in faces:
        x1, y1, x2, y2 = (int(round(v)) for v in face["box"])
        text = f"{face['label']} {face['probs'][face['label']]:.0%}"
        cv2.rectangle(out, (x1, y1), (x2, y2), (255, 200, 0), thickness)
        (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        top = max(0, y1 - h - base - 4)
        cv2.rectangle(out, (x1, top), (x1 + w + 4, top + h + base + 4), (255, 200, 0), -1)
        cv2.putText(out, text, (x1 + 2, top + h + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness)
    return out
