"""Face detection (MTCNN, weights shipped in facenet-pytorch), FER-style face crops, and
the one rule for which crop of a picture is read as its face.

The expression models learnt from FER-2013, whose faces are framed tightly: eyes a
little above the middle, chin at the bottom edge, ears mostly cut off. A crop framed
differently (a loose detector box with hair and background) costs accuracy, so each
face is aligned on its landmarks to where FER puts them. The targets below were
measured by running this detector on 365 FER-2013 training faces (medians, in 48x48
pixels): eye midpoint at (24.4, 18.7), eyes 17.9 apart, eye midpoint to mouth midpoint
18.9. The crop is rotated so the eyes are level (most FER faces are upright).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .images import as_rgb

FER_EYES = (24.0, 18.7)  # x centred: FER faces are mirrored in training anyway
FER_EYE_DISTANCE = 17.9
FER_EYE_TO_MOUTH = 18.9
CROP_SIZE = 96  # 2x FER's 48: enough detail to show in the app; models reduce it to 48
DETECT_MAX_SIDE = 960  # photos are shrunk to this for detection (speed); crops use full resolution
# A face box covering this much of the image means the image is a face crop already
# (FER-2013 style, as external evaluation feeds them). Re-cropping such an image costs
# accuracy (measured on 600 PublicTest crops: 71.0% classified as given, 64.2% re-cropped),
# and only 1% of FER-2013 crops have a face box smaller than this.
READY_CROP_AREA = 0.3


@dataclass
class Face:
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in image pixels
    landmarks: np.ndarray  # (5, 2): left eye, right eye, nose, mouth left, mouth right
    confidence: float
    crop: np.ndarray  # CROP_SIZE x CROP_SIZE RGB uint8, framed like FER-2013

    @property
    def area(self) -> float:
        return max(0.0, self.box[2] - self.box[0]) * max(0.0, self.box[3] - self.box[1])


MIN_FACE_SIZE = 20  # MTCNN's smallest face, in detection pixels; each halving of it adds pyramid levels
PNET_WINDOW = 12  # MTCNN's first network looks at 12x12 windows


@lru_cache(maxsize=2)
def _detector(min_face_size: int = MIN_FACE_SIZE):
    from facenet_pytorch import MTCNN
    return MTCNN(keep_all=True, device="cpu", min_face_size=min_face_size)


def fer_crop(rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The face aligned and framed like a FER-2013 crop, CROP_SIZE x CROP_SIZE RGB."""
    import cv2
    eyes = (landmarks[0] + landmarks[1]) / 2
    mouth = (landmarks[3] + landmarks[4]) / 2
    eye_vec = landmarks[1] - landmarks[0]
    # Image pixels per FER pixel. Averaging the two distances keeps the size right when
    # the head turns (eyes look closer together) or nods (eyes look nearer the mouth).
    face_scale = (np.linalg.norm(eye_vec) / FER_EYE_DISTANCE + np.linalg.norm(mouth - eyes) / FER_EYE_TO_MOUTH) / 2
    scale = CROP_SIZE / 48 / max(face_scale, 1e-6)  # crop pixels per image pixel
    angle = np.degrees(np.arctan2(eye_vec[1], eye_vec[0]))
    matrix = cv2.getRotationMatrix2D((float(eyes[0]), float(eyes[1])), float(angle), float(scale))
    matrix[:, 2] += np.array(FER_EYES) * CROP_SIZE / 48 - eyes
    if scale < 0.5:  # a large face: area-average its region first so the crop is not aliased
        corners = cv2.invertAffineTransform(matrix) @ np.array([[0, 0, 1], [CROP_SIZE, 0, 1], [0, CROP_SIZE, 1],
                                                                [CROP_SIZE, CROP_SIZE, 1]], float).T
        x0, y0 = np.maximum(np.floor(corners.min(1)) - 2, 0).astype(int)
        x1, y1 = np.minimum(np.ceil(corners.max(1)) + 2, rgb.shape[1::-1]).astype(int)
        if x1 > x0 and y1 > y0:
            matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], float)
            shrink = 2 * scale
            rgb = cv2.resize(rgb[y0:y1, x0:x1], None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            matrix[:, :2] /= shrink
    return cv2.warpAffine(rgb, matrix, (CROP_SIZE, CROP_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def _faces_from(rgb, boxes, probs, points, shrink: float, min_confidence: float) -> list[Face]:
    if boxes is None:
        return []
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) / shrink
    points = np.asarray(points, dtype=np.float64).reshape(-1, 5, 2) / shrink
    faces = [Face(tuple(box.tolist()), pts, float(p), fer_crop(rgb, pts))
             for box, p, pts in zip(boxes, probs, points) if p >= min_confidence]
    return sorted(faces, key=lambda f: f.area, reverse=True)


def _shrink_factor(rgb: np.ndarray) -> float:
    return min(1.0, DETECT_MAX_SIDE / max(rgb.shape[:2]))


def _for_detection(rgb: np.ndarray, shrink: float) -> np.ndarray:
    import cv2
    return rgb if shrink == 1.0 else cv2.resize(rgb, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)


def _fits_detector(shape: tuple[int, ...], shrink: float, min_face_size: int) -> bool:
    """Whether MTCNN's image pyramid has a level for an image of ``shape`` shrunk by
    ``shrink``: its first level scales a ``min_face_size`` face to the 12 px window, so an
    image whose shorter side is smaller has no level (and MTCNN fails instead of finding nothing)."""
    side = min(round(shape[0] * shrink), round(shape[1] * shrink))  # as cv2.resize rounds
    return side * (PNET_WINDOW / min_face_size) >= PNET_WINDOW  # MTCNN's own test


def detect_faces(image: np.ndarray, min_confidence: float = 0.9, min_face_size: int = MIN_FACE_SIZE) -> list[Face]:
    """Every face in an RGB (or gray) uint8 image, largest first, each with a FER-style
    crop. A larger ``min_face_size`` skips small faces and is several times faster."""
    rgb = as_rgb(image)
    shrink = _shrink_factor(rgb)
    if not _fits_detector(rgb.shape, shrink, min_face_size):  # too small for a face the detector can find
        return []
    boxes, probs, points = _detector(min_face_size).detect(_for_detection(rgb, shrink), landmarks=True)
    return _faces_from(rgb, boxes, probs, points, shrink, min_confidence)


def main_faces(frames: list[np.ndarray], min_confidence: float = 0.9) -> list[Face | None]:
    """The largest face of each video frame (None where there is none). Frames of one
    clip share a size, so the detector runs them as one batch."""
    if not frames:
        return []
    frames = [as_rgb(f) for f in frames]
    if len({f.shape for f in frames}) > 1:
        return [next(iter(detect_faces(f, min_confidence)), None) for f in frames]
    shrink = _shrink_factor(frames[0])
    if not _fits_detector(frames[0].shape, shrink, MIN_FACE_SIZE):
        return [None] * len(frames)
    batch = np.stack([_for_detection(f, shrink) for f in frames])
    boxes, probs, points = _detector().detect(batch, landmarks=True)
    return [next(iter(_faces_from(f, b, p, pts, shrink, min_confidence)), None)
            for f, b, p, pts in zip(frames, boxes, probs, points)]


def is_ready_crop(rgb: np.ndarray, faces: list[Face]) -> bool:
    """Whether a picture is read whole as one face crop: no face found in it, or its
    largest face fills it (a close-up or a dataset crop)."""
    return not faces or faces[0].area >= READY_CROP_AREA * rgb.shape[0] * rgb.shape[1]


def main_face_crop(rgb: np.ndarray, min_confidence: float = 0.9) -> tuple[np.ndarray, list[Face]]:
    """The crop a picture's emotion is read from, and the faces found: the largest face,
    or the whole picture where ``is_ready_crop`` says so. Serving, fusion and
    fine-tuning all read a picture this way."""
    faces = detect_faces(rgb, min_confidence=min_confidence)
    return (as_rgb(rgb) if is_ready_crop(rgb, faces) else faces[0].crop), faces
