import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from emotion_app import classify
from emotion_app.app.video import face_gallery
from emotion_app.core.labels import LABELS
from emotion_app.media.tracking import FaceTracks, between
from emotion_app.media.video import (
    MAX_FRAME_LONG_SIDE,
    MAX_FRAMES,
    MAX_SECONDS,
    ClipInfo,
    frame_size,
    probe,
    sample_frames,
    sampling_rate,
)

from .conftest import DATA, ROOT, needs_data

EXAMPLE = ROOT / "examples" / "astronaut_happy.mp4"
PHOTO = ROOT / "examples" / "astronaut.jpg"
CODECS = {  # container -> ffmpeg codec options (flv: Sorenson Spark, the encoder ffmpeg has for it)
    "mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    "avi": ["-c:v", "mpeg4", "-c:a", "libmp3lame"],
    "mov": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
    "mkv": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libopus"],
    "webm": ["-c:v", "libvpx", "-deadline", "realtime", "-b:v", "300k", "-c:a", "libopus"],
    "flv": ["-c:v", "flv", "-c:a", "libmp3lame", "-ar", "22050"],
}


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True)


def check_result(r: dict):
    assert "error" not in r, r.get("error")
    assert set(r["probs"]) == set(LABELS) and abs(sum(r["probs"].values()) - 1) < 1e-3
    assert r["label"] == max(r["probs"], key=r["probs"].get)
    for m in r["modalities"].values():
        assert set(m["probs"]) == set(LABELS)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Two-second clips of the example in every container, a clip whose first second has
    no face, a rotated phone-style clip and a clip without audio, all made here."""
    tmp = tmp_path_factory.mktemp("clips")
    out = {}
    for ext, codec in CODECS.items():
        out[ext] = tmp / f"clip.{ext}"
        ffmpeg("-i", EXAMPLE, "-t", 2, "-vf", "scale=640:360", *codec, out[ext])
    # 1 s of an empty dark frame, then 1 s of the face
    out["half_face"] = tmp / "half_face.mp4"
    ffmpeg("-f", "lavfi", "-i", "color=c=0x141420:s=640x360:r=25:d=1", "-loop", 1, "-t", 1, "-i", PHOTO,
           "-filter_complex", "[1:v]scale=-2:360,pad=640:360:(ow-iw)/2:0,fps=25,format=yuv420p[f];"
           "[0:v]format=yuv420p[b];[b][f]concat=n=2:v=1[v]", "-map", "[v]", "-c:v", "libx264",
           "-preset", "ultrafast", out["half_face"])
    # Stored sideways, as a phone held upright records, with the rotation a player applies:
    # ffmpeg 5.1 writes the tag 270 as a display matrix of -90 degrees, as phones do.
    sideways = tmp / "sideways.mp4"
    ffmpeg("-i", out["mp4"], "-vf", "transpose=2", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "copy", sideways)
    out["rotated"] = tmp / "rotated.mp4"
    ffmpeg("-i", sideways, "-c", "copy", "-metadata:s:v:0", "rotate=270", out["rotated"])
    out["silent"] = tmp / "silent.mp4"
    ffmpeg("-i", out["mp4"], "-an", "-c:v", "copy", out["silent"])
    return out


@pytest.mark.parametrize("ext", list(CODECS))
def test_every_container_gives_faces_and_voice(clips, ext):
    info = probe(clips[ext])
    assert info.has_audio and (info.width, info.height) == (640, 360)
    r = classify("video", [str(clips[ext])], transcribe=False)[0]
    check_result(r)
    assert r["modalities"]["face"]["frames"] in (10, 11)  # 2 s at 5 fps (mpeg4 in avi ends a frame later)
    assert r["modalities"]["face"]["frames_with_face"] >= 8
    assert "voice" in r["modalities"] and r["fusion"] == "late"
    assert [p["second"] for p in r["timeline"]] == list(range(int(np.ceil(r["duration"]))))


def test_frames_without_a_face_are_noted_and_left_out_of_the_timeline(clips):
    r = classify("video", [str(clips["half_face"])], transcribe=False)[0]
    check_result(r)
    assert "voice" not in r["modalities"] and any("no audio track" in n for n in r["notes"])
    assert any("no face in" in n for n in r["notes"])
    first, second = r["timeline"]
    assert first["face"] is None and first["fused"] is None
    assert second["face"] is not None and second["fused"] is not None
    assert not any(f["face"] for f in r["frames"] if f["time"] < 0.9)


def test_rotated_clip_is_turned_upright_before_face_detection(clips):
    info = probe(clips["rotated"])
    assert info.rotation == 90 and (info.width, info.height) == (640, 360)
    _, frame = next(sample_frames(clips["rotated"], info, 5.0, []))
    assert frame.shape == (360, 640, 3)
    r = classify("video", [str(clips["rotated"])], transcribe=False)[0]
    check_result(r)
    assert r["rotation"] == info.rotation and r["modalities"]["face"]["frames_with_face"] >= 8


def test_clip_without_audio_uses_the_face_alone(clips):
    r = classify("video", [str(clips["silent"])])[0]
    check_result(r)
    assert set(r["modalities"]) == {"face"} and any("no audio track" in n for n in r["notes"])
    assert r["probs"] == r["modalities"]["face"]["probs"]
    assert all(p["voice"] is None for p in r["timeline"])


@needs_data
def test_real_clips_silent_mead_and_speaking_cremad():
    mead = DATA / "video" / "mead_dreamtalk" / "W009_front_happy_level3_001.mp4"
    cremad = DATA / "video" / "cremad_renamed" / "sad_correct.mp4"
    silent, speaking = classify("video", [str(mead), str(cremad)], transcribe=False)
    check_result(silent)
    check_result(speaking)
    assert set(silent["modalities"]) == {"face"}
    assert set(speaking["modalities"]) == {"face", "voice"}
    assert speaking["modalities"]["face"]["frames_with_face"] == speaking["modalities"]["face"]["frames"]


def test_too_long_clip_is_refused_before_decoding(tmp_path):
    long_clip = tmp_path / "long.mp4"
    ffmpeg("-f", "lavfi", "-i", f"color=s=32x32:r=1:d={MAX_SECONDS + 60}", "-c:v", "libx264", "-preset",
           "ultrafast", long_clip)
    r = classify("video", [str(long_clip)])[0]
    assert "over the 10 min limit" in r["error"] and str(long_clip) in r["error"]


def test_long_clips_are_sampled_more_sparsely_with_a_note():
    fps, notes = sampling_rate(ClipInfo(duration=300.0, width=1280, height=720, has_audio=True, rotation=0), 5.0)
    assert fps * 300 == pytest.approx(MAX_FRAMES) and "frames per second" in notes[0]
    assert sampling_rate(ClipInfo(10.0, 1280, 720, True, 0), 5.0) == (5.0, [])


def test_bad_inputs_are_errors_and_the_batch_goes_on(clips, tmp_path):
    empty, garbage, text = tmp_path / "empty.mp4", tmp_path / "garbage.mkv", tmp_path / "notes.txt"
    empty.write_bytes(b"")
    garbage.write_bytes(np.random.default_rng(0).bytes(5000))
    text.write_text("hello")
    audio_only = ROOT / "examples" / "speech_happy.wav"
    results = classify("video", [str(tmp_path / "missing.mp4"), str(empty), str(garbage), str(text),
                                 str(audio_only), str(clips["mp4"])], transcribe=False)
    reasons = [r.get("error", "") for r in results]
    assert "file not found" in reasons[0]
    assert "file is empty" in reasons[1]
    assert "cannot read video" in reasons[2]
    assert "unsupported format" in reasons[3] and "unsupported format" in reasons[4]
    check_result(results[5])


def test_tracks_follow_the_main_speaker_through_gaps_not_the_bystander():
    def face(x, size, conf=0.99):
        return SimpleNamespace(box=(x, 0, x + size, size), area=size * size, confidence=conf)
    speaker = [face(100 + i, 80) for i in range(6)]
    bystander = [face(400, 30) for _ in range(6)]
    tracks = FaceTracks(max_gap=2)
    for i, faces in enumerate([[speaker[0], bystander[0]], [bystander[1]], [speaker[2], bystander[2]], [],
                               [speaker[4]], [speaker[5]]]):
        tracks.add(i, faces)
    assert tracks.main(6) == [speaker[0], None, speaker[2], None, speaker[4], speaker[5]]
    assert FaceTracks(max_gap=2).main(2) == [None, None]


def test_faces_between_detections_are_interpolated_and_cropped_from_their_frame():
    from PIL import Image

    from emotion_app.media.faces import detect_faces
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    (a,) = detect_faces(photo)
    shifted = np.roll(photo, 20, axis=1)  # the face moved 20 px right
    (b,) = detect_faces(shifted)
    mid = between(a, b, 0.5, np.roll(photo, 10, axis=1))
    assert mid.box[0] == pytest.approx(a.box[0] + 10, abs=2)
    assert mid.crop.shape == a.crop.shape
    assert np.abs(mid.crop.astype(int) - a.crop.astype(int)).mean() < 8  # the same face, framed the same


def test_face_gallery_crops_the_tracked_faces(clips):
    r = classify("video", [str(clips["mp4"])], transcribe=False)[0]
    gallery = face_gallery(r, size=4)
    assert len(gallery) == 4
    for crop, caption in gallery:
        assert crop.ndim == 3 and min(crop.shape[:2]) >= 40
        assert caption.endswith(tuple(LABELS))


def test_cli_predict_video_json_has_fused_modalities_and_timeline():
    proc = subprocess.run([sys.executable, "-m", "emotion_app", "predict", "--modality", "video", "--json",
                           "--fusion", "late", str(EXAMPLE)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (r,) = [json.loads(line) for line in proc.stdout.splitlines()]
    check_result(r)
    assert set(r["modalities"]) == {"face", "voice", "text"} and r["fusion"] == "late"
    assert r["transcript"] and r["modalities"]["text"]["transcript"] == r["transcript"]
    assert set(r["weights"]) == {"face", "voice", "text"} and abs(sum(r["weights"].values()) - 1) < 1e-3
    assert len(r["timeline"]) == int(np.ceil(r["duration"]))
    for point in r["timeline"]:
        assert set(point) == {"second", "face", "voice", "fused"}
        assert point["fused"] is None or set(point["fused"]) == set(LABELS)
    assert r["frames"][0]["face"] and len(r["frames"][0]["box"]) == 4


def test_small_and_extremely_wide_frames_keep_the_voice(tmp_path):
    """Frames too small for the face detector (32x32, or 320 px high once a 1600:1 clip is
    shrunk for detection) have no face; the soundtrack is still analysed."""
    paths = []
    for name, options in (("small", ["-vf", "scale=32:32"]), ("wide", ["-vf", "scale=320:320", "-aspect", "1600:1"])):
        paths.append(tmp_path / f"{name}.mp4")
        ffmpeg("-loop", 1, "-i", PHOTO, "-i", ROOT / "examples" / "speech_happy.wav", *options, "-t", 1,
               "-pix_fmt", "yuv420p", "-c:a", "aac", paths[-1])
    for r in classify("video", list(map(str, paths)), transcribe=False):
        assert "error" not in r, r["error"]
        assert "voice" in r["modalities"] and "face" not in r["modalities"]
    assert max(frame_size(probe(paths[1]))) <= MAX_FRAME_LONG_SIDE  # not decoded tens of thousands of pixels wide


def test_a_one_frame_clip_is_analysed_from_that_frame(tmp_path):
    """A single frame lasts 0.04 s, less than one sampling interval at 5 frames/s."""
    one = tmp_path / "one.mp4"
    ffmpeg("-loop", 1, "-i", PHOTO, "-frames:v", 1, "-vf", "scale=320:320", "-pix_fmt", "yuv420p", one)
    notes = []
    [(seconds, frame)] = list(sample_frames(one, probe(one), 5.0, notes))
    assert seconds == 0 and frame.shape == (320, 320, 3) and frame.std() > 10 and notes == []
    [r] = classify("video", [str(one)])
    assert r["modalities"]["face"]["frames_with_face"] == 1
