"""Reading uploaded images into RGB arrays."""
from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from ..core.errors import InputError
from ..core.inputs import check_file
from .formats import IMAGE_KINDS, MAX_IMAGE_MB

MAX_SIDE = 4096  # larger photos are shrunk to this: detection reads 960 px, crops need far less
# Decoding a phone's 200 MP JPEG at full size would cost 600 MB; baseline JPEGs (what phones
# write) are decoded at a reduced scale instead (draft mode) and meet this cap at that scale.
# A progressive JPEG meets it at full size: libjpeg holds all its DCT coefficients (2 bytes
# each) at full size whatever the scale, 6 bytes a pixel for 4:4:4 colour. At the cap that
# is ~400 MB (a 60 MP PNG takes ~640 MB); a 30000x30000 one took 5 GB.
MAX_DECODED_PIXELS = 60_000_000
JPEG_MAGIC = b"\xff\xd8\xff"


def load_image(path) -> np.ndarray:
    """An uploaded image as RGB uint8, upright per its EXIF orientation, at most
    MAX_SIDE pixels on its longer side. 16-bit and float images are scaled to 8 bits
    (not clipped), so a 16-bit grayscale PNG keeps its tones."""
    from PIL import Image, ImageOps
    p = check_file(path, IMAGE_KINDS, MAX_IMAGE_MB)
    with readable_image(path), _open(p) as im:
        _bound_decoding(path, im)
        im = ImageOps.exif_transpose(im)
        if max(im.size) > MAX_SIDE:
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return np.asarray(_as_8bit(im).convert("RGB"))


@contextmanager
def readable_image(path):
    """Pillow's ways of failing on an upload (a bomb, a damaged or foreign file) as the
    one message each, naming ``path``; an InputError raised inside passes as it is."""
    from PIL import Image, UnidentifiedImageError
    try:
        yield
    except InputError:
        raise
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: image is too large to decode ({exc})") from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path}: not a readable image ({exc.__class__.__name__}: {exc})") from exc


def _bound_decoding(path, im) -> None:
    """Refuse ``im`` from its header if decoding it would hold over MAX_DECODED_PIXELS,
    else set a large JPEG to decode at reduced scale. A progressive JPEG is counted at
    its full size (see MAX_DECODED_PIXELS), a baseline one at the reduced scale."""
    progressive = bool(im.info.get("progressive"))  # set by Pillow's JPEG reader only
    full_size = im.size
    if max(im.size) > MAX_SIDE and im.format == "JPEG":
        # decode at 1/2, 1/4 or 1/8 scale: the smallest that keeps half of MAX_SIDE
        im.draft("RGB", (MAX_SIDE // 2, MAX_SIDE // 2))
    width, height = full_size if progressive else im.size
    if width * height > MAX_DECODED_PIXELS:
        kind, advice = ("progressive JPEG", "a baseline (non-progressive) JPEG") if progressive else ("image", "JPEG")
        raise InputError(f"{path}: {kind} is {width}x{height}, over {MAX_DECODED_PIXELS // 1_000_000} "
                         f"megapixels; save it as {advice} or smaller")


def _open(path):
    """The image opened lazily. JPEGs skip Pillow's decompression-bomb check, which a
    200 MP phone photo trips: MAX_DECODED_PIXELS bounds them instead (_bound_decoding).
    Every other format keeps the check."""
    from PIL import Image, JpegImagePlugin
    with open(path, "rb") as f:
        is_jpeg = f.read(len(JPEG_MAGIC)) == JPEG_MAGIC
    return JpegImagePlugin.JpegImageFile(path) if is_jpeg else Image.open(path)


def _as_8bit(im):
    """16-bit, 32-bit and float modes scaled to 0-255 by their range (PIL's own convert
    clips them, which turns a 16-bit photo black and white)."""
    from PIL import Image
    if im.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return im
    values = np.asarray(im, dtype=np.float64)
    top = 65535.0 if im.mode.startswith("I;16") else max(float(values.max()), 1.0)
    return Image.fromarray(np.clip(values / top * 255.0 + 0.5, 0, 255).astype(np.uint8))  # 2-D uint8: mode L


def as_rgb(image: np.ndarray) -> np.ndarray:
    """Gray, RGB or RGBA uint8 -> contiguous RGB uint8."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    elif image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image, dtype=np.uint8)


def shrink(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """The image with its longer side at most ``max_side`` (area-averaged), else as it is."""
    scale = max_side / max(rgb.shape[:2])
    if scale >= 1:
        return rgb
    import cv2
    return cv2.resize(rgb, (max(1, round(rgb.shape[1] * scale)), max(1, round(rgb.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA)
