"""Text extractor: transcript -> tokenizer -> frozen Hugging Face text encoder -> per-token hidden states.

Stored rows are one per real token of the transcript, special tokens included ([CLS] first,
[SEP] last for BERT/ELECTRA-style tokenizers), so a head can pool on [CLS] or attend over all
tokens; padding positions are never stored. Each row holds the selected hidden states
(`last`, `all`, or `I,J,K` where 0 is the embedding output and i the output of layer i).

Also holds the small pieces the image encoder shares (layer selection, device,
model loading with a clear error, fp16 conversion).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from emo.accel import autocast, choose_precision, resolve_device
from emo.clip import Clip
from emo.constants import DEFAULT_TEXT_BACKBONE, FLOAT16_MAX
from emo.errors import BackboneError, ClipMissing, describe
from emo.extract.encoders.hub import pretrained_fingerprint
from emo.layer_spec import encoder_layers

SCHEMA_VERSION = 1


# ---- shared with the image encoder ----------------------------------------------------


def to_float16(tensor) -> np.ndarray:
    """Clamp into the float16 range first: an inf in the cache would poison every head trained on it."""
    import torch

    return tensor.float().clamp(-FLOAT16_MAX, FLOAT16_MAX).to(torch.float16).cpu().numpy()


def load_pretrained_model(resolved, device, flag: str):
    """AutoModel from a resolved folder, fp32 weights, eval mode; BackboneError naming the fix."""
    import torch
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(resolved.path, local_files_only=True, dtype=torch.float32)
    except Exception as exc:  # missing weights, unknown architecture, corrupt file...
        raise BackboneError(
            f"{resolved.name}: cannot load a model from {resolved.path} "
            f"({describe(exc)}); "
            f"pass a local folder holding config.json and the weights (a save_pretrained output), "
            f"e.g. {flag} /models/my-encoder"
        ) from None
    return model.to(device).eval()


# ---- tokenizer ---------------------------------------------------------------------------


def read_vocab(path: Path) -> list[str]:
    """One token per line, as the WordPiece loaders read it (an empty line is a token too)."""
    with open(path, encoding="utf-8") as handle:
        return [line.rstrip() for line in handle]


def load_tokenizer(resolved):
    """The model's own tokenizer, working around transformers 5 quirks with vocab.txt-only folders.

    Many hub models (KcELECTRA among them) ship only vocab.txt + tokenizer_config.json. From such a
    folder AutoTokenizer builds a tokenizer that defaults to do_lower_case=True, whose accent
    stripping decomposes Hangul syllables into jamo: every Korean word becomes [UNK]. So a
    WordPiece tokenizer is built here from vocab.txt with the folder's own options, inferring
    casing from the vocabulary when no tokenizer_config.json says it. Finally the tokenizer's
    vocabulary size is checked against the file (BertTokenizerFast(vocab_file=...) silently
    ignores the file and yields a 5-token vocabulary).
    """
    from transformers import AutoTokenizer, BertTokenizer

    folder = Path(resolved.path)
    vocab_file = folder / "vocab.txt"
    vocab = read_vocab(vocab_file) if vocab_file.is_file() else None
    try:
        if (folder / "tokenizer.json").is_file() or vocab is None:
            tokenizer = AutoTokenizer.from_pretrained(resolved.path, local_files_only=True)
        else:
            options = {}
            config_file = folder / "tokenizer_config.json"
            if config_file.is_file():
                options = json.loads(config_file.read_text(encoding="utf-8"))
            # A vocabulary that holds upper-case pieces was trained cased: lower-casing would hide them.
            cased = any(any(ch.isupper() for ch in token) for token in vocab if token and not token.startswith("["))
            tokenizer = BertTokenizer(
                vocab=str(vocab_file),
                do_lower_case=bool(options.get("do_lower_case", not cased)),
                strip_accents=options.get("strip_accents"),
                tokenize_chinese_chars=options.get("tokenize_chinese_chars", True),
            )
            if options.get("model_max_length"):
                tokenizer.model_max_length = int(options["model_max_length"])
    except Exception as exc:
        raise BackboneError(
            f"{resolved.name}: cannot load a tokenizer from {resolved.path} ({describe(exc)}); the folder needs tokenizer.json "
            "or vocab.txt (WordPiece) next to config.json"
        ) from None
    if vocab is not None and tokenizer.vocab_size != len(set(vocab)):
        raise BackboneError(
            f"{resolved.name}: the loaded tokenizer has {tokenizer.vocab_size} tokens but {vocab_file} lists "
            f"{len(set(vocab))}; the tokenizer files in {resolved.path} disagree (rebuild tokenizer.json from vocab.txt)"
        )
    return tokenizer


def tokenizer_options(tokenizer) -> dict[str, Any]:
    """The normalisation choices that change token ids, for the fingerprint."""
    options: dict[str, Any] = {"tokenizer": type(tokenizer).__name__, "vocab_size": tokenizer.vocab_size}
    for key in ("do_lower_case", "strip_accents", "tokenize_chinese_chars"):
        if key in tokenizer.init_kwargs:
            options[key] = tokenizer.init_kwargs[key]
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.normalizer is not None:
        options["normalizer"] = str(backend.normalizer)
    return options


# ---- the extractor -----------------------------------------------------------------------


@dataclass
class PreparedText:
    ids: np.ndarray  # (T,) int64 token ids, special tokens included, no padding
    truncated: bool  # the transcript was longer than max_tokens and lost its end


class TextExtractor:
    """Transcripts -> (T, L, D) float16 token sequences from a frozen text encoder."""

    modality = "text"
    dtype = "float16"

    def __init__(
        self,
        backbone: str = DEFAULT_TEXT_BACKBONE,
        layers: str | Sequence[int] = "last",
        device: str = "cpu",
        max_tokens: int = 512,
        batch_tokens: int = 8192,
        precision: str = "auto",
    ):
        from emo.extract.encoders.hub import resolve_pretrained

        if max_tokens < 2:
            raise BackboneError(f"max_tokens {max_tokens}: needs room for at least the special tokens")
        self.resolved = resolve_pretrained(backbone, "--text-backbone")
        self.device = resolve_device(device)
        self.autocast = choose_precision(self.device, precision, backbone).dtype
        self.tokenizer = load_tokenizer(self.resolved)
        model = load_pretrained_model(self.resolved, self.device, "--text-backbone")
        if getattr(model.config, "is_encoder_decoder", False):
            model = model.get_encoder()  # T5-style models: only the encoder reads the transcript
        self.model = model
        config = model.config
        self.num_hidden_states = int(config.num_hidden_layers) + 1
        self.layers = encoder_layers(layers, self.num_hidden_states, backbone, "text")
        self.row_shape = (len(self.layers), int(config.hidden_size))
        # Positions beyond the model's table would crash (or silently wrap); cap max_tokens there.
        limits = [int(max_tokens)]
        if 0 < self.tokenizer.model_max_length < 1_000_000:
            limits.append(int(self.tokenizer.model_max_length))
        if getattr(config, "max_position_embeddings", None):
            limits.append(int(config.max_position_embeddings))
        self.max_tokens = min(limits)
        self.batch_tokens = max(int(batch_tokens), self.max_tokens)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Fast tokenizers keep truncation state on the shared Rust object; prepare runs on threads.
        self._tokenize_lock = threading.Lock()

    # The runner batches prepared clips up to this many cost units (tokens).
    @property
    def batch_budget(self) -> float:
        return float(self.batch_tokens)

    def fingerprint(self) -> dict[str, Any]:
        return {
            **pretrained_fingerprint(SCHEMA_VERSION, self.modality, self.resolved, self.model.config.model_type,
                                     self.layers, self.num_hidden_states, self.row_shape[1]),
            "tokens": "all real tokens incl. special tokens, no padding",
            "max_tokens": self.max_tokens,
            "truncation": "keep the first max_tokens tokens",
            **tokenizer_options(self.tokenizer),
        }

    def prepare(self, clip: Clip) -> PreparedText:
        text = (clip.text or "").replace("\ufeff", "").strip()
        if not text:
            raise ClipMissing(clip.id, "empty transcript")
        with self._tokenize_lock:
            ids = self.tokenizer(text)["input_ids"]
            truncated = len(ids) > self.max_tokens
            if truncated:
                ids = self.tokenizer(text, truncation=True, max_length=self.max_tokens)["input_ids"]
        return PreparedText(ids=np.asarray(ids, dtype=np.int64), truncated=truncated)

    def cost(self, prepared: PreparedText) -> float:
        return float(len(prepared.ids))

    def encode(self, batch: Sequence[PreparedText]) -> list[np.ndarray]:
        import torch

        lengths = np.array([len(item.ids) for item in batch])
        results: list[np.ndarray | None] = [None] * len(batch)
        # Similar lengths together keep padding small; groups bounded by padded tokens bound memory.
        for group in self._groups(lengths):
            longest = int(lengths[group].max())
            ids = np.full((len(group), longest), self.pad_id, dtype=np.int64)
            mask = np.arange(longest)[None, :] < lengths[group][:, None]
            for row, index in enumerate(group):
                ids[row, : lengths[index]] = batch[index].ids
            with torch.inference_mode(), autocast(self.device, self.autocast):
                output = self.model(
                    input_ids=torch.from_numpy(ids).to(self.device),
                    attention_mask=torch.from_numpy(mask.astype(np.int64)).to(self.device),
                    output_hidden_states=True,
                )
                hidden = output.hidden_states
                if len(hidden) != self.num_hidden_states:
                    raise BackboneError(
                        f"{self.resolved.name}: returned {len(hidden)} hidden states, config says {self.num_hidden_states}"
                    )
                stacked = to_float16(torch.stack([hidden[i] for i in self.layers], dim=2))  # (B, T, L, D)
            for row, index in enumerate(group):
                results[index] = stacked[row, : lengths[index]]
        return results  # type: ignore[return-value]

    def _groups(self, lengths: np.ndarray) -> list[np.ndarray]:
        order = np.argsort(lengths, kind="stable")
        groups, start = [], 0
        for stop in range(1, len(order) + 1):
            # Sorted ascending, so the newest member is the longest: padded size = count * its length.
            if stop == len(order) or (stop + 1 - start) * lengths[order[stop]] > self.batch_tokens:
                groups.append(order[start:stop])
                start = stop
        return groups


def make_text_extractor(
    backbone: str = DEFAULT_TEXT_BACKBONE,
    layers: str | Sequence[int] | None = "last",
    device: str = "cpu",
    max_tokens: int = 512,
    batch_tokens: int = 8192,
    precision: str = "auto",
) -> TextExtractor:
    """The text extractor `emo extract --text-backbone ... --text-layers ...` builds."""
    return TextExtractor(
        backbone=backbone,
        layers=layers or "last",
        device=device,
        max_tokens=max_tokens,
        batch_tokens=batch_tokens,
        precision=precision,
    )
