"""Checks shared by every modality, so bad input gets one clear message everywhere."""
from __future__ import annotations

import functools
import sys
from pathlib import Path


class InputError(ValueError):
    """An input that cannot be used; the message names the input and the reason."""


def check_file(path, kinds: tuple[str, ...], max_mb: float) -> Path:
    """Return the path if it is an existing, non-empty file within the size limit."""
    if not str(path).strip():
        raise InputError("empty path: no file named")
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: file not found")
    if p.is_dir():
        raise InputError(f"{path}: is a folder, not a file")
    size = p.stat().st_size
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


def command_line(main):
    """For a command-line ``main(argv)``: a problem with what the user gave (a bad value,
    an unknown model or job, a missing file) is one line on stderr and exit status 2,
    not a traceback."""
    @functools.wraps(main)
    def run(argv=None) -> int:
        try:
            return main(argv)
        except (InputError, ValueError, LookupError, OSError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"error: {message}", file=sys.stderr)
            return 2
    return run
