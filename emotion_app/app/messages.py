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


def warning(reason) -> str:
    """A refusal or failure as a tab says it: the reason may quote what was typed or
    uploaded (a queue name, a file name), so it is shown as text."""
    return f"⚠️ {markdown_escape(str(reason))}"


def problem(result: dict, path: str) -> str:
    """A failed result's message, naming the upload by its file name."""
    return warning(with_file_names(result["error"], [path]))


SEGMENT_HEADERS = ["time", "transcript", "voice", "words", "fused"]


def _said(part: dict | None) -> str:
    return f"{part['label']} {part['probs'][part['label']]:.0%}" if part else ""


def segment_rows(segments: list[dict]) -> list[list[str]]:
    """One table row per speech segment: its time span, its words and the voice, words and
    fused emotion of that stretch alone (a long recording told segment by segment)."""
    return [[f"{s['start']:.1f}–{s['end']:.1f} s", s.get("transcript", ""), _said(s), _said(s.get("text")),
             _said(s.get("fused"))] for s in segments]


def stage_reporter(progress):
    """A pipeline's ``progress(stage, fraction)`` callback, shown on a ``gr.Progress`` bar."""
    return lambda stage, fraction: progress(fraction, desc=stage)
