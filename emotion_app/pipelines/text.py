"""Text emotion: cleaning, batched prediction, and dialogues read turn by turn with the
turns around each (``dialogue=True``: the inputs are one conversation, in order)."""
from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import NamedTuple

from ..core.errors import InputError
from ..core.results import error_result, make_result
from ..models.base import Model
from ..models.text_encoder import DEFAULT_CONTEXT_TURNS, dialogue_utterances
from .base import Pipeline, classify, limit_threads, resolve

MAX_CHARS = 2000
BATCH = 512
DIALOGUE_MODEL = "text-dialogue"
_ENGLISH_HINTS = set("the a an and or but i you he she it we they is are was were be been not no to of in on "
                     "for with my your this that what so very just can't don't i'm it's".split())
# A leading name of one to three words, then a colon (not a URL's "://").
_SPEAKER_LINE = re.compile(r"^\s*([^\W\d_][\w.'-]*(?: [\w.'-]+){0,2})\s*:(?!//)\s*(.*)$", re.DOTALL)


def prepare_text(text) -> tuple[str, list[str]]:
    """Normalise one text and say what was done to it; empty text is an InputError."""
    if text is None or not str(text).strip():
        raise InputError("empty text: nothing to classify")
    try:
        str(text).encode("utf-8")
    except UnicodeEncodeError:  # surrogate escapes: bytes that were not UTF-8
        raise InputError("not valid UTF-8 text: it has bytes no text encoding here can read") from None
    text = unicodedata.normalize("NFC", str(text)).strip()
    notes = []
    if len(text) > MAX_CHARS:
        text = text[:MAX_CHARS]
        notes.append(f"text truncated to its first {MAX_CHARS} characters")
    words = re.findall(r"[^\W\d_]+(?:'[^\W\d_]+)?", text.lower())
    if words and not any(w in _ENGLISH_HINTS for w in words) and (
            len(words) >= 3 or any(not w.isascii() for w in words)):
        notes.append("this does not look like English; the models are trained on English text")
    if not words:
        notes.append("no words found (only symbols or emoji); the prediction rests on them alone")
    return text, notes


def parse_line(line) -> tuple[str | None, str]:
    """``"Speaker: utterance"`` -> (speaker, utterance); a line without a speaker -> (None, line)."""
    text = "" if line is None else str(line)
    match = _SPEAKER_LINE.match(text)
    if match:
        return match.group(1).strip(), match.group(2)
    return None, text


class Turn(NamedTuple):
    """One utterance of a conversation from a manifest: its text, which conversation it
    belongs to, and optionally who says it and its position (else the row order counts)."""
    text: str
    dialogue_id: str
    speaker: str = ""
    utterance_id: str = ""
    line: int | None = None


@dataclass
class Text:
    text: str
    notes: list[str]
    speaker: str | None = None


class TextPipeline(Pipeline):
    """Texts, each on its own; or, with ``dialogue=True``, the lines of one conversation
    (``"Speaker: utterance"``, speaker optional), each read with the turns around it by
    ``text-dialogue`` unless another text model is named. Its config says how many turns
    before (``context_turns``, overridable) and after (``future_turns``) it reads and
    whether it reads speakers. An empty line is an error result and is left out of the
    other lines' context."""

    modality = "text"
    defaults = {"dialogue": False, "context_turns": None}

    def load_model(self, model: str | None) -> Model:
        turns = self.options["context_turns"]
        if turns is not None and (not self.options["dialogue"] or turns < 0):
            raise ValueError(f"context_turns must be 0 or more, for a dialogue; got {turns}")
        return resolve("text", model or (DIALOGUE_MODEL if self.options["dialogue"] else None))

    def preprocess(self, item) -> Text:
        if isinstance(item, Turn):  # already parsed: a manifest row
            speaker, utterance = item.speaker or None, item.text
        else:
            speaker, utterance = parse_line(item) if self.options["dialogue"] else (None, item)
        text, notes = prepare_text(utterance)
        return Text(text, notes + self.model.reading_notes(text), speaker)

    def forward(self, texts: list[Text]) -> list:
        if self.options["dialogue"]:
            return self._dialogue(texts)
        probs = []
        for start in range(0, len(texts), BATCH):
            probs.extend(self.model.calibrated_proba([t.text for t in texts[start:start + BATCH]]))
        return probs

    def _dialogue(self, texts: list[Text]) -> list:
        config = self.model.entry.config
        past = self.options["context_turns"]
        utterances = dialogue_utterances([(t.speaker, t.text) for t in texts],
                                         config.get("context_turns", DEFAULT_CONTEXT_TURNS) if past is None else past,
                                         config.get("future_turns", 0), config.get("speaker_tags", False))
        return list(zip(self.model.calibrated_proba(utterances), utterances))

    def postprocess(self, item, text: Text, output) -> dict:
        extra = {"notes": text.notes} if text.notes else {}
        extra.update(self.model.certainty(output[0] if self.options["dialogue"] else output))
        if not self.options["dialogue"]:
            return make_result(item, output, self.model.entry.ref, **extra)
        probs, utterance = output
        return make_result(item, probs, self.model.entry.ref, speaker=text.speaker, text=text.text,
                           context_turns=len(utterance.context), following_turns=len(utterance.after), **extra)

    def __call__(self, inputs) -> list[dict]:
        inputs = list(inputs)
        results = super().__call__(inputs)
        if self.options["dialogue"]:  # a line's problem names its line (a manifest turn's, its manifest line)
            for i, (item, result) in enumerate(zip(inputs, results), 1):
                line = item.line if isinstance(item, Turn) else i
                if "error" in result and line:
                    result["error"] = f"line {line}: {result['error']}"
        return results


PIPELINE = TextPipeline


def classify_conversations(turns: list[Turn], model: str | None = None, **options) -> list[dict]:
    """Many conversations at once (a dialogue manifest): each read in order, by
    ``utterance_id`` where every turn has a number, else in the order given, with its
    context; one result per turn, in the order given, naming its conversation. A turn
    without a ``dialogue_id`` is an error result; the others go on."""
    limit_threads()
    results: list[dict | None] = [None] * len(turns)
    conversations: dict[str, list[int]] = {}
    for i, turn in enumerate(turns):
        if not turn.dialogue_id:
            where = f"line {turn.line}: " if turn.line else ""
            results[i] = error_result(turn.text, InputError(f"{where}no dialogue_id: the turn belongs to no conversation"))
        else:
            conversations.setdefault(turn.dialogue_id, []).append(i)
    for dialogue_id, rows in conversations.items():
        if all(turns[i].utterance_id.lstrip("-").isdigit() for i in rows):
            rows = sorted(rows, key=lambda i: int(turns[i].utterance_id))
        for i, result in zip(rows, classify("text", [turns[i] for i in rows], model=model, dialogue=True, **options)):
            result["input"] = turns[i].text
            result["dialogue_id"] = dialogue_id
            if turns[i].utterance_id:
                result["utterance_id"] = turns[i].utterance_id
            results[i] = result
    return results
