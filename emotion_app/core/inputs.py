"""Checks shared by every modality, so bad input gets one clear message everywhere."""
from __future__ import annotations

import errno
import re
import stat
from pathlib import Path

from .errors import InputError

NOT_FOUND = (errno.ENOENT, errno.ENOTDIR, errno.ELOOP)  # what Path.exists() reads as no file there


def check_file(path, kinds: tuple[str, ...], max_mb: float) -> Path:
    """Return the path if it is an existing, non-empty file within the size limit."""
    if not str(path).strip():
        raise InputError("empty path: no file named")
    p = Path(path)
    try:
        info = p.stat()
    except ValueError:  # a NUL byte in the name
        raise InputError(f"{path}: file not found") from None
    except OSError as exc:  # a name over 255 bytes raises too, not just a missing file
        reason = "file not found" if exc.errno in NOT_FOUND else (exc.strerror or "cannot be read").lower()
        raise InputError(f"{path}: {reason}") from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{path}: is a folder, not a file")
    size = info.st_size
    if size == 0:
        raise InputError(f"{path}: file is empty")
    if size > max_mb * 1024 * 1024:
        raise InputError(f"{path}: file is {size / 1024 / 1024:.0f} MB, over the {max_mb:.0f} MB limit")
    if kinds and p.suffix.lower().lstrip(".") not in kinds:
        raise InputError(f"{path}: unsupported format {p.suffix or '(none)'}; expected one of {', '.join(kinds)}")
    return p


def with_file_names(message: str, paths) -> str:
    """``message`` with each of ``paths`` shortened to its file name: the app's users
    should see "clip.wav", not the server's upload folder."""
    for path in paths:
        if isinstance(path, (str, Path)) and str(path):
            message = message.replace(str(path), Path(path).name)
    return message


def elided(text: str, limit: int) -> str:
    """``text`` cut in its middle to about ``limit`` characters: a message keeps its start
    (the row or file it names) and its end (the reason)."""
    half = limit // 2
    return text if len(text) <= limit else f"{text[:half]} … {text[-half:]}"


# Characters that make links, images, HTML, code or emphasis inside a line of Markdown; whole
# texts (``block``) also escape what makes headings and lists at a line's start. An
# underscore between letters or digits makes no emphasis (IMG_0412.jpg), so only one at a
# word's edge is escaped there: names stay readable where a message is read raw (the API).
_MARKDOWN_INLINE = re.compile(r"([\\`*~\[\]<>!&]|(?<![0-9A-Za-z])_|_(?![0-9A-Za-z]))")
_MARKDOWN_BLOCK = re.compile(r"([\\`*_\[\]<>!&|{}()#+\-.~])")


def markdown_escape(text: str, block: bool = False) -> str:
    """User-given text (a file or queue name, a typed text) shown literally in Markdown:
    no links, images or HTML from it. ``block`` for whole texts, whose lines may start
    with a heading or list marker."""
    return (_MARKDOWN_BLOCK if block else _MARKDOWN_INLINE).sub(r"\\\1", str(text))
