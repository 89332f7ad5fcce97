"""Reading uploaded images into RGB arrays."""
from __future__ import annotations

import numpy as np

from ..core.errors import InputError
from ..core.inputs import check_file
from .formats import IMAGE_KINDS, MAX_IMAGE_MB

MAX_PIXELS = 50_000_000


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
