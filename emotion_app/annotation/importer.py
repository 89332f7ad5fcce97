"""Uploads to annotation items: files, folders, zips, .txt (one text per line) and .csv
manifests become ``Staged`` items whose media are already stored content-addressed
(``<root>/media/<sha256[:2]>/<sha256>.<ext>``). A bad input becomes a message in the
``ImportReport`` naming it and the reason, and the rest are still imported.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable

from ..core.errors import InputError
from ..core.inputs import check_file
from ..media.archives import hidden, members, open_zip, read_limited, text_lines
from ..media.audio import load_audio
from ..media.formats import AUDIO_KINDS, IMAGE_KINDS, MAX_AUDIO_MB, MAX_IMAGE_MB, MAX_VIDEO_MB, VIDEO_KINDS
from ..media.images import load_image
from ..media.video import probe
from ..pipelines.text import MAX_CHARS

MAX_TEXT_MB = 20
MAX_ITEMS = 20_000  # per import: what annotators can get through, and bounded memory
# What each tab takes. A .webm upload is taken as audio (a browser's voice recording);
# the video tab sends its webm clips as video.
KINDS = {"image": IMAGE_KINDS, "audio": AUDIO_KINDS, "video": VIDEO_KINDS}
MAX_MB = {"image": MAX_IMAGE_MB, "audio": MAX_AUDIO_MB, "video": MAX_VIDEO_MB}
# How an item is checked before it is queued: read as the modality's tab would read it.
READERS = {"image": load_image, "audio": load_audio, "video": probe}


@dataclass(frozen=True)
class Staged:
    """An item ready for the database: its media already stored (path relative to the root), or its text."""
    sha256: str
    modality: str
    media: str | None
    text: str | None
    original_name: str | None
    context: tuple[str, ...] = ()  # the dialogue turns before a text item


@dataclass
class ImportReport:
    added: list[int] = field(default_factory=list)
    duplicates: int = 0
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{len(self.added)} item(s) added"]
        if self.duplicates:
            parts.append(f"{self.duplicates} already in the queue")
        if self.errors:
            parts.append(f"{len(self.errors)} skipped")
        return ", ".join(parts)


def modality_of(name: str) -> str:
    kind = PurePosixPath(name).suffix.lower().lstrip(".")
    for modality, kinds in KINDS.items():
        if kind in kinds:
            return modality
    known = ", ".join(sorted({k for kinds in KINDS.values() for k in kinds} | {"txt", "csv", "zip"}))
    raise InputError(f"{name}: unsupported format {PurePosixPath(name).suffix or '(none)'}; expected one of {known}")


class Stager:
    """Stores media under ``root`` and turns inputs into ``Staged`` items.

    ``known_media(sha256)`` returns the stored path of an item with that content, if any,
    so the same bytes under another extension are not stored twice."""

    def __init__(self, root: Path, known_media: Callable[[str], str | None]):
        self.root = root
        self.media_dir = root / "media"
        self.known_media = known_media

    def paths(self, paths, report: ImportReport) -> list[Staged]:
        return [s for path in paths for s in self._path(Path(path), report)]

    def _path(self, path: Path, report: ImportReport) -> list[Staged]:
        try:
            if not path.exists():
                raise InputError(f"{path}: file not found")
            if path.is_dir():
                children = [c for c in sorted(path.rglob("*")) if c.is_file() and not hidden(c.relative_to(path).parts)]
                if not children:
                    raise InputError(f"{path}: folder has no files")
                return [s for child in children for s in self._path(child, report)]
            kind = path.suffix.lower().lstrip(".")
            if kind == "zip":
                return self._zip(check_file(path, ("zip",), max(MAX_MB.values())), report)
            if kind not in ("txt", "csv"):
                return [self.file(path)]
            column, values = _texts(check_file(path, (kind,), MAX_TEXT_MB).read_bytes(), kind, str(path))
            if column == "text":
                return [self.text(text, path.name) for text in values]
            staged = []
            for value in values:  # a manifest's paths are relative to it, and stay inside its folder
                try:
                    staged.append(self.file(_inside(path.parent, value, str(path))))
                except InputError as exc:
                    report.errors.append(str(exc))
            return staged
        except InputError as exc:
            report.errors.append(str(exc))
            return []

    def file(self, path: Path, modality: str | None = None) -> Staged:
        """A media file, of the given modality or else the one its extension says."""
        modality = modality or modality_of(str(path))
        path = check_file(path, KINDS[modality], MAX_MB[modality])
        with open(path, "rb") as f:
            return self._media(f, path.suffix.lower().lstrip("."), modality, path.name, str(path))

    def text(self, text, original_name: str | None = None, context: tuple[str, ...] = ()) -> Staged:
        """A text item; one with ``context`` (a dialogue turn) is a different item from the
        same words said elsewhere, so its identity includes the context."""
        text = str(text or "").strip()
        if not text:
            raise InputError("empty text: nothing to annotate")
        if len(text) > MAX_CHARS:  # what a text item is read as; the rest would be stored for nothing
            raise InputError(f"text is {len(text)} characters, over the {MAX_CHARS} a text item holds")
        try:
            "".join((text, *context)).encode("utf-8")
        except UnicodeEncodeError:  # surrogate escapes (from the API): bytes that were not UTF-8
            raise InputError("not valid UTF-8 text: it has bytes no text encoding here can read") from None
        identity = json.dumps([list(context), text]) if context else text
        return Staged(hashlib.sha256(identity.encode("utf-8")).hexdigest(), "text", None, text, original_name,
                      tuple(context))

    def picture(self, image, original_name: str | None = None) -> Staged:
        """An image given as an array or PIL image (a Gradio image input, a face crop), stored as PNG."""
        from PIL import Image
        picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
        buffer = io.BytesIO()
        picture.save(buffer, format="PNG")
        buffer.seek(0)
        return self._media(buffer, "png", "image", original_name, "image")

    def _zip(self, path: Path, report: ImportReport) -> list[Staged]:
        """The zip's media and texts, each bad member reported; a zip with nothing to import
        (hidden clutter such as ``__MACOSX/`` and dot-files is left out unsaid) is said, not
        read as 0 items."""
        archive = open_zip(path)
        staged = []
        with archive:
            files = members(archive, str(path), MAX_ITEMS, max(MAX_MB.values()))
            if not files:
                raise InputError(f"{path}: no files to import (hidden ones such as __MACOSX/ and dot-files are "
                                 "left out)")
            for info in files:
                member = PurePosixPath(info.filename)
                name = f"{path}:{info.filename}"
                kind = member.suffix.lower().lstrip(".")
                try:
                    if kind in ("txt", "csv"):
                        with archive.open(info) as f:
                            column, values = _texts(read_limited(f, MAX_TEXT_MB * 1024 * 1024, name), kind, name)
                        if column == "path":
                            raise InputError(f"{name}: a CSV of paths inside a zip is not read; "
                                             "the zip's media files are imported directly")
                        staged += [self.text(text, member.name) for text in values]
                        continue
                    modality = modality_of(name)
                    with archive.open(info) as f:
                        staged.append(self._media(f, kind, modality, member.name, name))
                except InputError as exc:
                    report.errors.append(str(exc))
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    report.errors.append(f"{name}: corrupt zip member ({exc})")
        return staged

    def _media(self, stream, kind: str, modality: str, original_name: str | None, name: str) -> Staged:
        """Copy a stream into the media folder under its content hash (atomically: a temp
        file, fsync, rename), checking its size and that its tab can read it."""
        limit = MAX_MB[modality] * 1024 * 1024
        self.media_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.media_dir, suffix=f".part.{kind}")
        try:
            digest, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(1 << 20):
                    size += len(chunk)
                    if size > limit:
                        raise InputError(f"{name}: file is over the {MAX_MB[modality]:.0f} MB limit")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if size == 0:
                raise InputError(f"{name}: file is empty")
            try:
                READERS[modality](tmp)
            except InputError as exc:
                raise InputError(str(exc).replace(tmp, name)) from None
            sha = digest.hexdigest()
            relative = self.known_media(sha) or f"media/{sha[:2]}/{sha}.{kind}"
            final = self.root / relative
            if not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(tmp, final)
            return Staged(sha, modality, relative, None, original_name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _inside(folder: Path, value: str, name: str) -> Path:
    """A path a manifest names, which must stay inside the manifest's folder: a manifest
    must not import the server's other files."""
    target = (folder / value).resolve()
    if not target.is_relative_to(folder.resolve()):
        raise InputError(f"{name}: {value!r} points outside the manifest's folder; not imported")
    return target


def _texts(data: bytes, kind: str, name: str) -> tuple[str, list[str]]:
    """A .txt file's non-empty lines, or a .csv's ``text`` (or ``path``) column: (column,
    values), at most MAX_ITEMS of at most MAX_CHARS characters."""
    if kind == "txt":
        values = [line for _, line in text_lines(data, name, MAX_ITEMS, MAX_CHARS)]
        column = "text"
    else:
        try:
            content = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
        reader = csv.DictReader(io.StringIO(content))
        header = reader.fieldnames or ()
        column = "text" if "text" in header else "path" if "path" in header else None
        if column is None:
            raise InputError(f"{name}: a CSV needs a 'text' or 'path' column")
        values = []
        try:
            for row in reader:
                value = (row[column] or "").strip()
                if len(value) > MAX_CHARS:
                    raise InputError(f"{name}: line {reader.line_num} has {len(value)} characters, over the limit "
                                     f"of {MAX_CHARS}")
                if value:
                    values.append(value)
                if len(values) > MAX_ITEMS:
                    raise InputError(f"{name}: over {MAX_ITEMS} rows")
        except csv.Error as exc:
            raise InputError(f"{name}: not a readable CSV ({exc})") from None
    if not values:
        raise InputError(f"{name}: contains no {column}s")
    return column, values
