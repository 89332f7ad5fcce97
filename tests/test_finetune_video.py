"""Fine-tuning on labelled video clips: the upload's bad rows listed, and a real job end to
end (a background worker reads the clips, trains the face and voice members, fits the
late fusion, compares before/after, and its models are activated and rolled back). The
clips are cut from ``examples/astronaut_happy.mp4`` here; their labels are arbitrary."""
import shutil
import subprocess
import zipfile

import pytest

from emotion_app.finetune.data import MIN_PER_CLASS
from emotion_app.finetune.runner import activate, rollback, submit, validate
from emotion_app.finetune.train import too_few_to_tell
from emotion_app.models.fusion import fusion_model
from emotion_app.models.registry import active_model

from .conftest import ROOT
from .test_finetune import finished, stop_leftover_jobs  # noqa: F401 - autouse fixture

EXAMPLE = ROOT / "examples" / "astronaut_happy.mp4"
SPEAKERS = 5

pytestmark = pytest.mark.skipif(not shutil.which("ffmpeg"), reason="needs ffmpeg to make the clips")


def ffmpeg(*args):
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *map(str, args)], check=True)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Ten 1.2 s talking-face clips (five speakers, one happy and one sad each), a silent
    one and a faceless one with speech."""
    folder = tmp_path_factory.mktemp("clips")
    rows = []
    for i in range(2 * SPEAKERS):
        name = f"c{i}.mp4"
        ffmpeg("-ss", (i % SPEAKERS) * 0.6, "-t", 1.2, "-i", EXAMPLE, "-vf", "scale=480:270", "-c:v", "libx264",
               "-preset", "ultrafast", "-c:a", "aac", folder / name)
        rows.append((name, "happy" if i < SPEAKERS else "sad", f"s{i % SPEAKERS}"))
    ffmpeg("-i", folder / "c0.mp4", "-an", "-c:v", "copy", folder / "silent.mp4")
    ffmpeg("-f", "lavfi", "-i", "color=c=gray:s=160x90:d=1.2", "-i", ROOT / "examples" / "speech_sad.wav",
           "-shortest", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac", folder / "faceless.mp4")
    rows += [("silent.mp4", "happy", "s0"), ("faceless.mp4", "sad", "s1")]
    return folder, rows


def manifest_zip(path, folder, rows, extra=()):
    with zipfile.ZipFile(path, "w") as z:
        for name, *_ in rows:
            z.write(folder / name, f"media/{name}")
        for name, data in extra:
            z.writestr(name, data)
        lines = [["path", "label", "speaker"]] + [[f"media/{n}", label, s] for n, label, s in rows]
        with z.open("labels.csv", "w") as f:
            f.write("\n".join(",".join(line) for line in lines).encode())
    return path


def test_video_upload_lists_every_bad_row(clips, tmp_path):
    folder, rows = clips
    bad = [("media/missing.mp4", "happy", "s9"), ("media/notes.mp4", "sad", "s9"), ("media/c1.mp4", "bored", "s9"),
           ("../outside.mp4", "happy", "s9"), ("media/c2.mp4", "", "s9")]
    upload = manifest_zip(tmp_path / "clips.zip", folder, rows, extra=[("media/notes.mp4", b"not a video")])
    with zipfile.ZipFile(upload, "a") as z:
        z.writestr("more.csv", "path,label,speaker\n" + "\n".join(",".join(r) for r in bad))
    report = validate("video", upload)
    assert report.ok and report.counts == {"happy": SPEAKERS + 1, "sad": SPEAKERS + 1}
    problems = "\n".join(report.problems)
    assert len(report.problems) == len(bad), problems
    for where in ("line 2 (media/missing.mp4): file not found", "line 3 (media/notes.mp4)", "line 4", "line 5",
                  "line 6: no label"):
        assert f"more.csv {where}" in problems
    assert "'bored' has no canonical class" in problems and "points outside the upload" in problems
    assert f"{SPEAKERS} speaker(s): the held-out part is whole speakers" in report.markdown()
    assert "1 clip(s): no audio track: face only" in report.markdown()

    # label folders work too; a class below MIN_PER_CLASS is reported and dropped
    tree = tmp_path / "tree"
    for name, label, _ in rows[:MIN_PER_CLASS + 1]:
        (tree / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(folder / name, tree / label / name)
    report = validate("video", tree)
    assert not report.ok and any("class sad: only 1 usable" in p for p in report.problems)


def test_video_fine_tune_job_end_to_end(clips, tmp_path):
    folder, rows = clips
    job, report = submit("video", manifest_zip(tmp_path / "clips.zip", folder, rows), epochs=1, validation_limit=4)
    assert report.ok and job.spec["bases"]["fusion"] == "fusion-late@1"
    job = finished(job.id)
    assert job.status == "done", job.error
    result = job.result
    held = result["evaluations"]["upload_heldout"]
    assert held["after"]["n"] == result["split"]["heldout"] >= 2  # whole speakers held out: at least one pair
    assert {"upload_heldout_face", "upload_heldout_voice", "upload_heldout_frames",
            "upload_heldout_segments"} <= set(result["evaluations"])
    assert set(result["candidates"]) == {"image", "audio", "fusion"}
    assert abs(sum(result["fusion"]["weights"].values()) - 1) < 1e-3
    assert too_few_to_tell(result).startswith("Too few to tell")

    before = {m: active_model(m).ref for m in ("image", "audio", "fusion")}
    activate(job.id)
    assert {m: active_model(m).ref for m in result["candidates"]} == result["candidates"]
    assert fusion_model("late").entry.ref == result["candidates"]["fusion"]  # "late" now means the fitted one
    assert fusion_model("late").weights == result["fusion"]["weights"]
    rollback(job.id)
    assert {m: active_model(m).ref for m in before} == before
    assert fusion_model("late").entry.ref == "fusion-late@1"
