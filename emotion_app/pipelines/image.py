"""Photos -> faces -> emotions. Every face of every photo in a batch is classified in
one pass; a photo read whole (no face found, or one that fills it: a ready-made crop)
says so in a note."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.labels import LABELS
from ..core.results import label_probs, make_result
from ..media.faces import Face, detect_faces, is_ready_crop
from ..media.images import load_image, shrink
from .base import Pipeline, limit_threads, resolve

WHOLE_IMAGE_SIDE = 256  # a picture read whole is a face crop: the networks read 48-112 px
NO_FACE = "no face detected: the whole image was classified as one face crop"
FILLS_IMAGE = "the face fills the image: classified as a ready-made face crop"


@dataclass
class Photo:
    faces: list[Face]  # the faces the result reports (boxes)
    crops: list[np.ndarray]  # what is classified: one per face, or the whole photo
    note: str | None


class ImagePipeline(Pipeline):
    modality = "image"
    defaults = {"min_confidence": 0.9}

    def preprocess(self, path) -> Photo:
        rgb = load_image(path)
        faces = detect_faces(rgb, min_confidence=self.options["min_confidence"])
        if not is_ready_crop(rgb, faces):
            return Photo(faces, [f.crop for f in faces], None)
        # read whole: kept small, so a batch of big photos without faces holds no full-size copies
        return Photo(faces[:1], [shrink(rgb, WHOLE_IMAGE_SIDE)], FILLS_IMAGE if faces else NO_FACE)

    def forward(self, photos: list[Photo]) -> list[np.ndarray]:
        crops = [c for photo in photos for c in photo.crops]
        probs = self.model.calibrated_proba(crops)
        bounds = np.cumsum([0] + [len(photo.crops) for photo in photos])
        return [probs[start:end] for start, end in zip(bounds, bounds[1:])]

    def postprocess(self, path, photo: Photo, probs: np.ndarray) -> dict:
        faces = [{"box": [round(float(v), 1) for v in f.box], "confidence": round(float(f.confidence), 4),
                  **label_probs(p), **self.model.certainty(p)} for f, p in zip(photo.faces, probs)]
        return make_result(str(path), probs[0], self.model.entry.ref, **self.model.certainty(probs[0]),
                           face_detected=bool(photo.faces), faces=faces,
                           **({"notes": [photo.note]} if photo.note else {}))


PIPELINE = ImagePipeline


def classify_crops(crops, model: str | None = None) -> np.ndarray:
    """(N, 7) probabilities for face crops (any size, gray or RGB)."""
    limit_threads()
    return resolve("image", model).calibrated_proba(list(crops)) if len(crops) else np.zeros((0, len(LABELS)))
