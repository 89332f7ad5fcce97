"""What every face model is compared on, as a served model reads it: RAF-DB's held-out
tenth, FER-2013 PublicTest and the faces of the shared video clips. Both face training
scripts (``training.image``, ``training.face_wild``) score and choose with these."""
from __future__ import annotations

import csv

import numpy as np

from emotion_app.core.labels import LABEL_TO_ID, canonical
from emotion_app.core.metrics import classification_metrics
from emotion_app.train.datasets import FER_VALIDATION as VALIDATION
from emotion_app.train.datasets import data_root, load_fer, load_raf, raf_split


def video_clip_faces(frames_per_clip: int = 5) -> list[tuple[int, list]]:
    """(label id, main-face crops) for each labelled clip in the shared video folder: faces
    from other corpora (CREMA-D, eNTERFACE'05, MEAD), a check that FER training generalises.
    Frames are spread over the middle of each clip, where the expression is shown."""
    import cv2

    from emotion_app.media.faces import main_faces
    root = data_root() / "video"
    if not (root / "labels.csv").exists():
        return []
    with open(root / "labels.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    clips = []
    for row in rows:
        capture = cv2.VideoCapture(str(root / row["path"]))
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        frames = []
        for position in np.linspace(0.3, 0.9, frames_per_clip):
            capture.set(cv2.CAP_PROP_POS_FRAMES, int(position * (count - 1)))
            ok, frame = capture.read()
            if ok:
                frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        capture.release()
        crops = [face.crop for face in main_faces(frames) if face is not None]
        if crops:
            clips.append((LABEL_TO_ID[canonical(row["label"])], crops))
    return clips


def clip_metrics(model, clips) -> dict:
    """Clip-level metrics: a clip's prediction is the mean of its faces' probabilities."""
    predictions = [model.predict_proba(crops).mean(0).argmax() for _, crops in clips]
    return classification_metrics([label for label, _ in clips], predictions)


def evaluation_sets() -> dict:
    """What every face model is compared on, each as a served model reads it: RAF-DB's
    held-out tenth (internet photos, whole aligned crops, as a photo that is a face crop
    is read), FER-2013 PublicTest, and the main face of the shared video clips (other
    corpora no model trains on; clip-level)."""
    raf_x, raf_y = load_raf()
    _, val = raf_split(raf_y)
    fer_x, fer_y = load_fer("publictest")
    return {"raf_val": (list(raf_x[val]), raf_y[val]), VALIDATION: (list(fer_x), fer_y),
            "video_clips_crosscorpus": video_clip_faces()}


def score(model, sets: dict) -> dict:
    out = {}
    for name, data in sets.items():
        if name == "video_clips_crosscorpus":
            if data:
                out[name] = clip_metrics(model, data)
        else:
            out[name] = classification_metrics(data[1], model.predict_proba(data[0]).argmax(1))
    return out
