"""The project's one error idiom.

Problems with what a user gave raise ``InputError`` (a bad file, text or value; the
message names the input and the reason) or ``ModelNotFound`` (an unknown model id).
Pipelines turn either into a per-item ``{"input", "error"}`` result so a batch goes
on; command lines turn them into one ``error:`` line and exit status 2; the app shows
them as a message.
"""
from __future__ import annotations

import functools
import logging
import sys


class InputError(ValueError):
    """An input that cannot be used; the message names the input and the reason."""


class ModelNotFound(LookupError):
    """No model with that id, or none at all for a modality."""

    def __str__(self):
        return str(self.args[0])


def command_line(main):
    """For a command-line ``main(argv)``: a problem with what the user gave (a bad value,
    an unknown model or job, a missing file) is one line on stderr and exit status 2,
    not a traceback."""
    @functools.wraps(main)
    def run(argv=None) -> int:
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
        logging.getLogger("emotion_app").setLevel(logging.INFO)  # progress of our own work, not the libraries'
        try:
            return main(argv)
        except (InputError, ValueError, LookupError, OSError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
            print(f"error: {message}", file=sys.stderr)
            return 2
    return run
