"""How results and problems read in the tabs' Markdown messages."""
from __future__ import annotations

from ..core.inputs import with_file_names

MODALITY_NAMES = {"image": "face", "text": "text", "audio": "voice", "video": "video"}


def top(result: dict) -> str:
    """The top class in bold with its probability."""
    return f"**{result['label']}** ({result['probs'][result['label']]:.0%})"


def notes(result: dict) -> str:
    return "".join(f"\n\n_Note: {n}_" for n in result.get("notes", []))


def problem(result: dict, path: str) -> str:
    """A failed result's message, naming the upload by its file name."""
    return f"⚠️ {with_file_names(result['error'], [path])}"
