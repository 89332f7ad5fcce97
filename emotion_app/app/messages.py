"""How results and problems read in the tabs' Markdown messages."""
from __future__ import annotations

import json

from ..core.inputs import markdown_escape, with_file_names

# Model work (image, audio, video, tri-modal analysis and the fine-tune check) shares one
# queue slot pair across endpoints: on two cores, a third heavy request only slows all three.
HEAVY = {"concurrency_id": "heavy", "concurrency_limit": 2}
MODALITY_NAMES = {"image": "face", "text": "text", "audio": "voice", "video": "video"}


def top(result: dict) -> str:
    """The top class with its probability: in bold, unless the result is uncertain."""
    label, probability = result["label"], result["probs"][result["label"]]
    if result.get("uncertain"):
        return f"{label}? ({probability:.0%}, uncertain)"
    return f"**{label}** ({probability:.0%})"


def notes(result: dict) -> str:
    return "".join(f"\n\n_Note: {n}_" for n in result.get("notes", []))


def for_api(result, path: str | None = None):
    """A result (or list of results) as an API answer: the CLI's ``--json`` shape, with
    the upload named by its file name, never the server's upload path."""
    if path is None:
        return result
    return json.loads(with_file_names(json.dumps(result, ensure_ascii=False), [path]))


def top_classes(result: dict | None) -> dict | None:
    """``{label: probability}`` for a ``gr.Label``, or None for no result."""
    return dict(result["probs"]) if result and "probs" in result else None


def problem(result: dict, path: str) -> str:
    """A failed result's message, naming the upload by its file name."""
    return f"⚠️ {markdown_escape(with_file_names(result['error'], [path]))}"
