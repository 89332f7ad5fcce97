"""The main speaker's face through a clip.

MTCNN runs every DETECT_EVERY_SECONDS only (it costs far more than decoding or
classifying); faces are linked from detection to detection by box overlap, and in the
frames between two detections a face's landmarks are interpolated and it is cropped
there, so every sampled frame gets its own expression at a third of the detector's
cost. The main speaker is the track that fills most of the picture for longest.
"""
from __future__ import annotations

import numpy as np

from .faces import Face, detect_faces, fer_crop
from .video import ClipInfo, sample_frames

MIN_FACE_CONFIDENCE = 0.9
DETECT_EVERY_SECONDS = 0.6  # MTCNN runs this often; frames between get interpolated landmarks
TRACK_IOU = 0.3  # a face continues a track when its box overlaps the track's last box this much
TRACK_GAP_SECONDS = 1.0  # a track survives this long without a face (a turn of the head, a blink of the detector)
# The main speaker's face on the detector's 360-pixel frames: 40 px is 11 % of the frame's
# height, smaller than any speaker a clip is about; measured 39 ms per frame vs 83 ms at
# MTCNN's default 20 px (a 720p clip, one thread).
MIN_FACE_PIXELS = 40


def box_iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracks:
    """Faces linked from detection to detection by box overlap.

    Each new face, largest first, joins the track whose last box overlaps it most (a
    track may skip up to ``max_gap`` frames); the main speaker is the track with the
    largest sum of face area times detection confidence: on screen longest and closest.
    """

    def __init__(self, max_gap: int):
        self.max_gap, self.tracks = max_gap, []

    def add(self, i: int, faces: list) -> list[tuple[dict, object]]:
        """Link frame ``i``'s faces; returns (track, its previous face) for each face."""
        linked, taken = [], set()
        for face in sorted(faces, key=lambda f: -f.area):
            candidates = [(box_iou(t["last"][1].box, face.box), k) for k, t in enumerate(self.tracks)
                          if k not in taken and i - t["last"][0] <= self.max_gap + 1]
            overlap, k = max(candidates, default=(0.0, None))
            if k is None or overlap < TRACK_IOU:
                self.tracks.append({"faces": {}, "score": 0.0, "last": None})
                k = len(self.tracks) - 1
            track = self.tracks[k]
            linked.append((track, track["last"]))
            track["faces"][i], track["last"] = face, (i, face)
            track["score"] += face.area * face.confidence
            taken.add(k)
        return linked

    def main(self, frames: int) -> list:
        """Per frame, the main speaker's face or None."""
        if not self.tracks:
            return [None] * frames
        best = max(self.tracks, key=lambda t: t["score"])
        return [best["faces"].get(i) for i in range(frames)]


def between(a, b, w: float, frame: np.ndarray):
    """The face in a frame between two detections of it, landmarks and box interpolated
    (``w`` from 0 at ``a`` to 1 at ``b``), cropped from that frame."""
    landmarks = (1 - w) * a.landmarks + w * b.landmarks
    box = tuple(float(v) for v in (1 - w) * np.asarray(a.box) + w * np.asarray(b.box))
    return Face(box, landmarks, min(a.confidence, b.confidence), fer_crop(frame, landmarks))


def track_faces(path, info: ClipInfo, fps: float, notes: list[str]):
    """Sampled frame times and the main speaker's face in each (or None).

    MTCNN runs on every ``DETECT_EVERY_SECONDS`` only (it costs far more than decoding or
    classifying); in the frames between two detections of the same face its landmarks
    are interpolated and the face is cropped there, so every sampled frame still gets
    its own expression."""
    every = max(1, round(fps * DETECT_EVERY_SECONDS))
    tracks = FaceTracks(max_gap=max(every, round(TRACK_GAP_SECONDS * fps)))
    times, pending = [], []  # pending: (index, frame) since the last detection

    def detect(i, frame):
        found = detect_faces(frame, min_confidence=MIN_FACE_CONFIDENCE, min_face_size=MIN_FACE_PIXELS)
        for track, previous in tracks.add(i, found):
            if previous is not None and previous[0] == i - len(pending) - 1:
                for j, between_frame in pending:
                    w = (j - previous[0]) / (i - previous[0])
                    track["faces"][j] = between(previous[1], track["faces"][i], w, between_frame)
        pending.clear()

    for i, (t, frame) in enumerate(sample_frames(path, info, fps, notes)):
        times.append(t)
        if i % every:
            pending.append((i, frame))
        else:
            detect(i, frame)
    if pending:  # the clip ended between detections: detect on its last frame
        detect(*pending.pop())
    return np.array(times), tracks.main(len(times))
