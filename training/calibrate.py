"""Calibrate a model's probabilities: ``python -m training.calibrate MODEL [MODEL ...]``.

Fits one temperature per model on held-out data it was not trained on (see
``emotion_app.core.calibration``), chooses the top-probability threshold below which
its results are flagged uncertain, and writes both into the model folder's config
with the before/after figures on its card. The held-out data, by modality:

- text: the CARER, GoEmotions and MELD dev splits pooled (the kinds of writing the
  app meets); the dialogue model: MELD dev read as conversations, as it is served;
- image: RAF-DB's held-out tenth and FER-2013 PublicTest, pooled;
- audio: the speakers the model's card says it never trained on.

Refits from scratch each run (the raw probabilities do not depend on a previous
calibration).
"""
from __future__ import annotations

import argparse
import logging

import numpy as np

from emotion_app.core.calibration import calibrate
from emotion_app.core.errors import InputError
from emotion_app.models.cards import update_model_folder
from emotion_app.models.registry import clear_cache, create_model, get_entry
from emotion_app.train.datasets import (
    SANITY_SPEAKERS,
    TEXT_SPLITS,
    load_fer,
    load_raf,
    raf_split,
    speech_corpus,
    text_split,
)

log = logging.getLogger(__name__)


def held_out(entry) -> tuple[str, list, np.ndarray]:
    """(name, inputs, label ids) the model is calibrated on."""
    if entry.modality == "text" and entry.config.get("future_turns"):
        from .text_encoder import meld_dialogue_split
        texts, labels = meld_dialogue_split("dev", entry.config["context_turns"], entry.config["future_turns"],
                                            entry.config.get("speaker_tags", False))
        return "meld_dev_dialogue", texts, np.asarray(labels)
    if entry.modality == "text":
        pairs = [text_split(corpus, "dev") for corpus in TEXT_SPLITS]
        return "+".join(f"{c}_dev" for c in TEXT_SPLITS), [t for ts, _ in pairs for t in ts], \
            np.concatenate([np.asarray(y) for _, y in pairs])
    if entry.modality == "image":
        raf_x, raf_y = load_raf()
        _, val = raf_split(raf_y)
        fer_x, fer_y = load_fer("publictest")
        return "raf_val+fer2013_publictest", list(raf_x[val]) + list(fer_x), np.concatenate([raf_y[val], fer_y])
    if entry.modality == "audio":
        from emotion_app.finetune.data import prepare_speech
        clips = [c for c in speech_corpus() if c["speaker"] in SANITY_SPEAKERS]
        waves, labels = [], []
        for clip in clips:
            try:
                waves.append(prepare_speech(clip["path"])[0])
                labels.append(clip["label"])
            except InputError:  # as in prediction, a clip without enough speech is not scored
                continue
        return "+".join(SANITY_SPEAKERS) + "_unseen_speaker", waves, np.asarray(labels)
    raise ValueError(f"{entry.ref}: no held-out data to calibrate a {entry.modality} model on")


def calibrate_model(model_id: str) -> dict:
    entry = get_entry(model_id)
    name, inputs, labels = held_out(entry)
    probs = create_model(entry.ref).predict_proba(inputs)
    calibration = calibrate(probs, labels, name)
    update_model_folder(entry.folder, config={**entry.config, "calibration": calibration})
    clear_cache()
    log.info("%s: %s", entry.ref, calibration)
    return calibration


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m training.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model ids (the served ones: ensembles, not their members)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    for model_id in args.models:
        calibrate_model(model_id)


if __name__ == "__main__":
    main()
