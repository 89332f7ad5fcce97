"""Per-stage timings of the video pipeline on a 10 s 720p clip: ``python benchmarks/bench_video.py``.

The clip is composed with moviepy from the bundled examples into a temporary folder:
the astronaut photo slowly zooming on a 1280x720 canvas at 30 fps (H.264), with the
happy example speech twice (AAC). Each stage is timed on its own through the modules'
public functions, after a warm-up run that loads every model, as the median of
``--repeats`` runs; ``end_to_end`` is ``classify("video", ...)`` on the file, which is what
``predict --modality video`` runs.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from emotion_app.core.labels import LABELS  # noqa: E402  (needs the path above)
from emotion_app.media import tracking, video  # noqa: E402
from emotion_app.pipelines import classify  # noqa: E402

EXAMPLES = ROOT / "examples"
SECONDS = 10.0


def compose_clip(path: Path) -> Path:
    """10 s, 1280x720, 30 fps: the photo zooming from 100 % to 110 %, speech twice."""
    from moviepy import AudioFileClip, ColorClip, CompositeVideoClip, ImageClip, concatenate_audioclips
    speech = AudioFileClip(str(EXAMPLES / "speech_happy.wav"))
    audio = concatenate_audioclips([speech, speech]).with_duration(SECONDS)
    face = (ImageClip(str(EXAMPLES / "astronaut.jpg")).resized(height=720).with_duration(SECONDS)
            .resized(lambda t: 1 + 0.01 * t).with_position("center"))
    canvas = ColorClip((1280, 720), color=(20, 20, 30)).with_duration(SECONDS)
    CompositeVideoClip([canvas, face]).with_audio(audio).write_videofile(
        str(path), fps=30, codec="libx264", audio_codec="aac", preset="veryfast", logger=None)
    return path


def timed(fn, repeats: int):
    """(median seconds, last return value) over ``repeats`` runs."""
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return round(statistics.median(times), 3), value


def stages(clip: Path, repeats: int, fusion: str) -> dict:
    """Each stage on its own, in the order the pipeline runs them (the voice branch runs
    in a second thread beside the frames in the video pipeline)."""
    from emotion_app.media.transcribe import transcribe
    from emotion_app.pipelines import resolve
    from emotion_app.pipelines.audio import analyse_wave
    from emotion_app.pipelines.fusion import fuse

    out = {}
    out["probe"], info = timed(lambda: video.probe(clip), repeats)
    fps = 5.0
    out["decode_frames"], frames = timed(lambda: list(video.sample_frames(clip, info, fps, [])), repeats)
    out["faces_detect_track_crop"], (_, track) = timed(lambda: tracking.track_faces(clip, info, fps, []), repeats)
    out["faces_detect_track_crop"] = round(out["faces_detect_track_crop"] - out["decode_frames"], 3)
    crops = [face.crop for face in track if face is not None]
    face_model = resolve("image")
    out["face_expression"], face_probs = timed(lambda: face_model.predict_proba(crops), repeats)
    out["decode_audio"], wave = timed(lambda: video.extract_audio(clip), repeats)
    audio_model = resolve("audio")
    out["voice_vad_and_model"], voice = timed(lambda: analyse_wave(str(clip), wave, audio_model, transcribe=False),
                                              repeats)
    out["transcript"], text = timed(lambda: transcribe(wave), repeats)
    out["text_emotion"], text_result = timed(lambda: classify("text", [text])[0], repeats)
    probs = {"image": face_probs.mean(axis=0), "audio": voice["probs"], "text": text_result["probs"]}
    out["late_fusion"], _ = timed(lambda: fuse("late", probs), repeats)
    out["sum_of_stages"] = round(sum(out.values()), 3)
    out["end_to_end"], result = timed(lambda: classify("video", [str(clip)], fusion=fusion)[0], repeats)
    out["frames"], out["frames_with_face"] = len(frames), len(crops)
    out["result"] = {"label": result.get("label"), "error": result.get("error"), "transcript": result.get("transcript"),
                     "modalities": {k: v["label"] for k, v in result.get("modalities", {}).items()}}
    assert set(result.get("probs", LABELS)) == set(LABELS)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fusion", default="late")
    parser.add_argument("--clip", help="time this clip instead of the composed one")
    args = parser.parse_args(argv)
    import torch

    from emotion_app.pipelines.base import limit_threads
    limit_threads()  # as every request does (EMOTION_APP_THREADS)
    with tempfile.TemporaryDirectory() as tmp:
        clip = Path(args.clip) if args.clip else compose_clip(Path(tmp) / "bench_720p_10s.mp4")
        start = time.perf_counter()
        classify("video", [str(clip)], fusion=args.fusion)  # warm-up: loads every model
        warm_up = round(time.perf_counter() - start, 3)
        report = {"clip": str(clip) if args.clip else "composed 10 s 1280x720 30 fps H.264 + AAC",
                  "threads": torch.get_num_threads(), "first_call_with_model_loading": warm_up,
                  **stages(clip, args.repeats, args.fusion)}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
