"""Uploads made to hurt: zip bombs, oversized text, and manifests that name the server's
own files. Each is refused with a message naming the problem, within a memory bound
measured in a separate process (peak RSS after the work minus peak RSS before it)."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import zipfile
import zlib

import pytest
from PIL import Image

from .conftest import ROOT

MEMORY_BOUND_MB = 150  # what a refused hostile upload may add to the process's peak memory

PROBE = """
import json, resource, sys
from emotion_app.annotation import AnnotationStore
from emotion_app.finetune.runner import validate
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kind, path, data = sys.argv[1:4]
if kind == "finetune":
    report = validate("text", path)
    answer = {"problems": report.problems, "usable": len(report.labels)}
else:
    report = AnnotationStore(data).import_paths("q", [path])
    answer = {"problems": report.errors, "usable": len(report.added)}
answer["added_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(answer))
"""


MEDIA_PROBE = """
import json, resource, sys, warnings
from PIL import Image
from emotion_app.core.errors import InputError
from emotion_app.media.audio import load_audio
from emotion_app.media.images import load_image
warnings.simplefilter("error", Image.DecompressionBombWarning)  # else printed on a user's terminal
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
kind, path = sys.argv[1:3]
try:
    answer = {"shape": list((load_audio if kind == "audio" else load_image)(path).shape)}
except InputError as exc:
    answer = {"error": str(exc)}
answer["added_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
print(json.dumps(answer))
"""


def run_probe(kind: str, path, tmp_path, script: str = PROBE) -> dict:
    done = subprocess.run([sys.executable, "-c", script, kind, str(path), str(tmp_path / "store")], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def zip_bomb(path):
    """292 KB that unpack to 300 MB: "hi\\n" x 10^8, beside a small honest file."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("happy/a.txt", "w") as f:
            for _ in range(100):
                f.write(b"hi\n" * (1 << 20))
        z.writestr("sad/b.txt", "so sad\n" * 10)
    return path


@pytest.mark.parametrize("kind", ["finetune", "annotation"])
def test_a_zip_bomb_is_refused_before_it_is_read(kind, tmp_path):
    answer = run_probe(kind, zip_bomb(tmp_path / "bomb.zip"), tmp_path)
    assert answer["usable"] == 0
    assert any("inflates" in p and "zip bomb" in p for p in answer["problems"]), answer
    assert answer["added_mb"] < MEMORY_BOUND_MB, answer


@pytest.mark.parametrize("kind", ["finetune", "annotation"])
def test_text_too_large_to_label_is_refused_as_it_is_read(kind, tmp_path):
    """30 MB of different lines compress only ~3:1, so only counting what is read stops them."""
    archive = tmp_path / "texts.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("happy/many.txt", "w") as f:
            for i in range(600_000):
                f.write(f"line {i} of a text nobody will label, {i * 7919 % 100003}\n".encode())
    answer = run_probe(kind, archive, tmp_path)
    assert any("over the 20 MB limit" in p for p in answer["problems"]), answer
    assert answer["added_mb"] < MEMORY_BOUND_MB, answer


def test_an_import_manifest_cannot_name_the_servers_other_files(tmp_path):
    from emotion_app.annotation import AnnotationStore
    private = tmp_path / "private"
    private.mkdir()
    Image.new("RGB", (64, 64), (200, 100, 50)).save(private / "private_face.jpg")
    upload = tmp_path / "upload"
    upload.mkdir()
    Image.new("RGB", (64, 64), (10, 100, 50)).save(upload / "mine.jpg")
    manifest = upload / "list.csv"
    manifest.write_text(f"path\nmine.jpg\n{private / 'private_face.jpg'}\n../private/private_face.jpg\n")
    store = AnnotationStore(tmp_path / "store")
    report = store.import_paths("q", [manifest])
    assert len(report.added) == 1  # mine.jpg only
    assert len(report.errors) == 2 and all("points outside the manifest's folder" in e for e in report.errors)


def test_many_channel_high_rate_audio_decodes_within_the_memory_bound(tmp_path):
    """240 KB of FLAC: 10 min of 7.1-channel 96 kHz silence, 1.8 GB as float32 samples."""
    bomb = tmp_path / "bomb.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=96000:cl=7.1", "-t", "599",
                    "-c:a", "flac", "-sample_fmt", "s16", str(bomb)], check=True)
    answer = run_probe("audio", bomb, tmp_path, MEDIA_PROBE)
    assert answer.get("shape") == [599 * 16000], answer
    assert answer["added_mb"] < MEMORY_BOUND_MB, answer


def test_phone_sized_jpegs_are_read_reduced_and_a_png_bomb_refused(tmp_path):
    """JPEGs of 144 and 200 megapixels are decoded at reduced scale (Pillow alone warns
    about the first and refuses the second); a 3 KB PNG that declares 50000x50000
    pixels is refused before it is decoded."""
    for size, shape in (((12000, 12000), [3000, 3000, 3]), ((16320, 12240), [3060, 4080, 3])):  # 1/4 scale
        photo = tmp_path / "phone.jpg"
        Image.new("L", size, 110).save(photo, quality=90)
        answer = run_probe("image", photo, tmp_path, MEDIA_PROBE)
        assert answer.get("shape") == shape, answer
        assert answer["added_mb"] < MEMORY_BOUND_MB, answer

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(bytes(3000))) + chunk(b"IEND", b""))
    answer = run_probe("image", bomb, tmp_path, MEDIA_PROBE)
    assert "bomb.png" in answer.get("error", "") and "too large" in answer["error"], answer


def test_a_progressive_jpeg_over_the_cap_is_refused_from_its_header(tmp_path):
    """libjpeg holds a progressive JPEG's whole coefficient buffer at full size, whatever
    the reduced scale (a 30000x30000 one took 5 GB), so its header's size meets the cap:
    a 64x64 progressive JPEG whose header claims 10000x8000 is refused before it is
    decoded, and a 25-megapixel one is still read at reduced scale."""
    small = io.BytesIO()
    Image.new("RGB", (64, 64), (120, 90, 60)).save(small, "JPEG", progressive=True, subsampling=0)
    data = bytearray(small.getvalue())
    frame = data.index(b"\xff\xc2")  # progressive frame header: marker, length, precision, height, width
    data[frame + 5:frame + 9] = struct.pack(">HH", 8000, 10000)
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(bytes(data))
    answer = run_probe("image", bomb, tmp_path, MEDIA_PROBE)
    assert answer.get("error", "").startswith(f"{bomb}: progressive JPEG is 10000x8000, over 60 megapixels"), answer
    assert "save it as a baseline (non-progressive) JPEG or smaller" in answer["error"], answer
    assert answer["added_mb"] < MEMORY_BOUND_MB, answer

    photo = tmp_path / "progressive.jpg"
    Image.new("L", (5000, 5000), 110).save(photo, progressive=True)
    answer = run_probe("image", photo, tmp_path, MEDIA_PROBE)
    assert answer.get("shape") == [2500, 2500, 3], answer  # 1/2 scale
    assert answer["added_mb"] < MEMORY_BOUND_MB, answer


def members_zip(path, names):
    with zipfile.ZipFile(path, "w") as z:
        for name in names:
            z.writestr(name, "so happy\n")
    return path


@pytest.mark.parametrize("names, refused", [
    (["happy/a", "happy/a/b.txt"], "'happy/a/b.txt' cannot be unpacked (File exists)"),  # a file, then a folder of that name
    (["happy/a/b.txt", "happy/a"], "'happy/a' cannot be unpacked (Is a directory)"),
    (["happy/" + "x" * 300 + ".txt"], "'happy/xxx"),  # one part over 255 bytes
    (["/".join(["d" * 200] * 30) + "/a.txt"], "'ddd"),  # a path over 4096 bytes
])
def test_a_zip_this_filesystem_cannot_unpack_is_refused_naming_the_member(names, refused, tmp_path):
    from emotion_app.core.errors import InputError
    from emotion_app.finetune.data import upload_rows
    (tmp_path / "work").mkdir()
    with pytest.raises(InputError) as caught:
        upload_rows(members_zip(tmp_path / "odd.zip", names), "text", tmp_path / "work")
    assert str(caught.value).startswith("odd.zip: member ") and refused in str(caught.value), caught.value
    assert len(str(caught.value)) < 300  # a hostile name is shortened, not repeated in full


def test_a_zip_member_climbing_out_is_refused_by_name_and_clutter_skipped_silently(tmp_path):
    from emotion_app.annotation import AnnotationStore
    png = tmp_path / "face.png"
    Image.new("RGB", (64, 64), (10, 100, 50)).save(png)
    clutter = [".DS_Store", "__MACOSX/._face.png", ".thumbs/face.png"]
    store = AnnotationStore(tmp_path / "store")
    for zipped, added, errors in ((clutter, 1, []), (clutter + ["../../x/evil.png"], 0, ["'../../x/evil.png' points outside"])):
        archive = tmp_path / "faces.zip"
        with zipfile.ZipFile(archive, "w") as z:
            for name in ["face.png", *zipped]:
                z.write(png, name)
        report = store.import_paths(f"q{added}", [archive])
        assert len(report.added) == added and len(report.errors) == len(errors), report.errors
        assert all(e in found for e, found in zip(errors, report.errors)), report.errors
