"""Uploads made to hurt: zip bombs, oversized text, and manifests that name the server's
own files. Each is refused with a message naming the problem, within a memory bound
measured in a separate process (peak RSS after the work minus peak RSS before it)."""
from __future__ import annotations

import json
import subprocess
import sys
import zipfile

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


def run_probe(kind: str, path, tmp_path) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, kind, str(path), str(tmp_path / "store")], cwd=ROOT,
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
