"""Should the Whisper-state voice models read the float encoder instead of CTranslate2's int8 one?

    python benchmarks/whisper_int8_vs_float.py [--clips 500]

CTranslate2's int8 arithmetic depends on the CPU's instruction set, so `audio-whisper-attn`
(and `audio-ensemble`, which holds it) give slightly different probabilities on different
machines; the float re-implementation in ``emotion_app.media.whisper_layers`` does not. This
scores the bundled head both ways on ``--clips`` clips each of nEMO and ASED (corpora it never
trained on; a fixed random sample from ``../shared/data``): UAR over each corpus's classes,
how often the two agree on the label, the mean frame cosine of the two encoders' states, and
the encoder time per clip at one thread. Measured 2026-12-02 (500 + 500 clips, quiet 2-core
machine): UAR nEMO 0.279 int8 / 0.281 float, ASED 0.289 / 0.292, 95% same label, frame
cosine 0.999, 17-18 vs 37-41 ms per clip. Accuracy is a wash and int8 is twice as fast, so
serving keeps int8 (the default voice model, `audio-wild-whisper-layers`, reads the float
encoder anyway).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from emotion_app.core.metrics import classification_metrics  # noqa: E402
from emotion_app.media.audio import load_audio  # noqa: E402
from emotion_app.media.transcribe import whisper_encode  # noqa: E402
from emotion_app.media.whisper_layers import layer_states  # noqa: E402
from emotion_app.models.registry import create_model  # noqa: E402
from emotion_app.train.datasets import speech_corpus  # noqa: E402

CORPORA = ("nemo", "ased")


def float_states(wave: np.ndarray) -> np.ndarray:
    return layer_states(wave)[-1].numpy()


def compare(clips_per_corpus: int) -> dict:
    net = create_model("audio-whisper-attn").net

    def probabilities(states: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.asarray(states, dtype=np.float32))[None]
        with torch.inference_mode():
            return net.head(net.forward_features(x, torch.tensor([x.shape[1]]))).softmax(-1)[0].numpy()

    warm_up = np.zeros(16000, np.float32)
    whisper_encode(warm_up), float_states(warm_up)  # load both encoders before timing
    items = speech_corpus(CORPORA)
    random.Random(0).shuffle(items)
    report = {}
    for corpus in CORPORA:
        chosen = [it for it in items if it["corpus"] == corpus][:clips_per_corpus]
        labels, int8_top, float_top, cosines, seconds = [], [], [], [], {"int8": 0.0, "float": 0.0}
        for item in chosen:
            wave = load_audio(item["path"])
            start = time.perf_counter()
            served = whisper_encode(wave)
            middle = time.perf_counter()
            exact = float_states(wave)
            seconds["int8"] += middle - start
            seconds["float"] += time.perf_counter() - middle
            cosines.append(np.mean(np.sum(served * exact, 1)
                                   / (np.linalg.norm(served, axis=1) * np.linalg.norm(exact, axis=1))))
            labels.append(item["label"])
            int8_top.append(probabilities(served).argmax())
            float_top.append(probabilities(exact).argmax())
        labels, int8_top, float_top = map(np.array, (labels, int8_top, float_top))
        report[corpus] = {"clips": len(chosen), "uar_int8": round(classification_metrics(labels, int8_top)["uar"], 3),
                          "uar_float": round(classification_metrics(labels, float_top)["uar"], 3),
                          "same_label": round(float(np.mean(int8_top == float_top)), 3),
                          "frame_cosine": round(float(np.mean(cosines)), 4),
                          **{f"ms_per_clip_{k}": round(1000 * v / max(len(chosen), 1), 1) for k, v in seconds.items()}}
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=500, help="clips per corpus")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(json.dumps(compare(args.clips), indent=2))


if __name__ == "__main__":
    main()
