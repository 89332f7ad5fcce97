"""Reading uploads that may be hostile: zip archives and text files, checked as they are
streamed, so that a small upload can never make the server read something huge.

A zip's own table of contents can lie about sizes, so every member is copied through a
byte counter that stops at its limit; a member that inflates more than MAX_RATIO times
(a zip bomb's whole trick) is refused before it is read. Text is read line by line,
with a cap on the number of lines and on each line's length.
"""
from __future__ import annotations

import io
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath

from ..core.errors import InputError

MAX_RATIO = 100  # real media and text compress far less than this; "hi\n" x 10^8 compresses 1000:1
CHUNK = 1 << 20
MAX_NAME_CHARS = 120  # of a member's name in a message: a hostile one can be 64 KB long


def short_name(member: str) -> str:
    """A member name short enough for a message."""
    return member if len(member) <= MAX_NAME_CHARS else member[:MAX_NAME_CHARS] + "…"


def outside(member: str) -> bool:
    """Whether a member's name leaves the archive: an absolute path, a drive or share, or
    ``..``, with backslashes read as the separators Windows tools write (as POSIX paths,
    ``..\\..\\x.jpg`` would be one hidden dot-file name, dropped without a word)."""
    path = PureWindowsPath(member)  # "/" separates too
    return bool(path.anchor) or ".." in path.parts


def hidden(parts) -> bool:
    """macOS and dot-file clutter that archives carry; ``..`` is not clutter but a way out
    of the archive, which ``members`` refuses by name."""
    return any((p.startswith(".") and p != "..") or p == "__MACOSX" for p in parts)


def open_zip(path: Path) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"{Path(path).name}: not a readable zip file ({exc})") from None


def members(archive: zipfile.ZipFile, name: str, max_members: int, max_total_mb: float) -> list[zipfile.ZipInfo]:
    """The archive's files (hidden clutter left out), refused as a whole when one points
    outside the archive (hidden or not), when there are too many, when they add up to too
    much, or when one inflates more than MAX_RATIO times."""
    climbing = [m.filename for m in archive.infolist() if not m.is_dir() and outside(m.filename)]
    if climbing:
        more = f" (and {len(climbing) - 1} more)" if len(climbing) > 1 else ""
        raise InputError(f"{name}: member {short_name(climbing[0])!r}{more} points outside the archive; "
                         "nothing in it was read")
    files = [m for m in archive.infolist() if not m.is_dir() and not hidden(PurePosixPath(m.filename).parts)]
    if len(files) > max_members:
        raise InputError(f"{name}: {len(files)} files, over the limit of {max_members}")
    if sum(m.file_size for m in files) > max_total_mb * 1024 * 1024:
        raise InputError(f"{name}: unpacks to over {max_total_mb:.0f} MB")
    for m in files:
        if m.file_size > MAX_RATIO * max(m.compress_size, 1) and m.file_size > CHUNK:
            raise InputError(f"{name}: member {short_name(m.filename)!r} inflates {m.file_size // max(m.compress_size, 1)} "
                             f"times (a zip bomb?); over the limit of {MAX_RATIO}")
    return files


def copy_limited(source, target, limit_bytes: int, name: str) -> int:
    """Copy a stream, counting what is actually read: over ``limit_bytes`` is an
    InputError, whatever the archive declared."""
    size = 0
    while chunk := source.read(CHUNK):
        size += len(chunk)
        if size > limit_bytes:
            raise InputError(f"{name}: over the {limit_bytes / 1024 / 1024:.0f} MB limit")
        target.write(chunk)
    return size


def read_limited(source, limit_bytes: int, name: str) -> bytes:
    buffer = io.BytesIO()
    copy_limited(source, buffer, limit_bytes, name)
    return buffer.getvalue()


def text_lines(data: bytes, name: str, max_lines: int, max_chars: int) -> list[tuple[int, str]]:
    """``(line number, text)`` of each non-empty line of UTF-8 text: at most ``max_lines``
    of at most ``max_chars`` characters each (more, or longer, is an InputError)."""
    try:
        content = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = []
    for number, line in enumerate(io.StringIO(content), 1):
        line = line.strip()
        if not line:
            continue
        if len(line) > max_chars:
            raise InputError(f"{name}: line {number} has {len(line)} characters, over the limit of {max_chars}")
        lines.append((number, line))
        if len(lines) > max_lines:
            raise InputError(f"{name}: over {max_lines} lines")
    return lines
