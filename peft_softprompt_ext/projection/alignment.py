"""Which tokens two tokenizers share: normalised surface strings, across tokenizer families.

Each token id becomes a key `(word_start, text)`:
* byte-level BPE (GPT-2, SmolLM2): the piece's characters are GPT-2's printable stand-ins for
  bytes; we map them back to bytes and decode UTF-8. A leading "Ġ" (a space) marks word start.
  Pieces that are not whole UTF-8 characters are skipped.
* SentencePiece-style (Gemma, Llama-2, T5): a leading "▁" marks word start, inner "▁" are spaces;
  byte-fallback pieces (`<0x0A>`) are skipped.
Special, added-special and reserved/unused tokens are skipped in both. With `lowercase=True`,
keys are case-folded and the lowest id wins among tokens that collide.
"""

from __future__ import annotations

import functools

import torch

from ..init import usable_token_ids


@functools.lru_cache(maxsize=1)
def byte_level_decoder() -> dict[str, int]:
    """GPT-2's byte-to-printable-character table, inverted (character -> byte)."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    characters = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            characters.append(256 + extra)
            extra += 1
    return {chr(character): byte for byte, character in zip(printable, characters)}


def tokenizer_family(tokenizer) -> str:
    """'byte_level' or 'sentencepiece', from which word-start marker the vocabulary uses."""
    pieces = tokenizer.convert_ids_to_tokens(list(range(min(len(tokenizer), 5000))))
    byte_level = sum(1 for p in pieces if p and p.startswith("Ġ"))
    metaspace = sum(1 for p in pieces if p and p.startswith("▁"))
    if max(byte_level, metaspace) == 0:
        raise ValueError(f"Cannot tell the word-start marker of tokenizer {type(tokenizer).__name__}: neither 'Ġ' nor '▁' found.")
    return "byte_level" if byte_level >= metaspace else "sentencepiece"


def normalise_piece(piece: str, family: str) -> tuple[bool, str] | None:
    """(word_start, text) of a vocabulary piece, or None if it is not a whole-character token."""
    if family == "byte_level":
        decoder = byte_level_decoder()
        try:
            raw = bytes(decoder[character] for character in piece).decode("utf-8")
        except (KeyError, UnicodeDecodeError):
            return None  # a partial UTF-8 character
        word_start = raw.startswith(" ")
        text = raw[1:] if word_start else raw
    else:
        if piece.startswith("<0x") and piece.endswith(">") and len(piece) == 6:
            return None  # byte fallback
        word_start = piece.startswith("▁")
        text = (piece[1:] if word_start else piece).replace("▁", " ")
    return (word_start, text) if text else None


def vocabulary_keys(tokenizer, num_embeddings: int, lowercase: bool = False) -> dict[tuple[bool, str], int]:
    """Normalised key -> token id, over the usable vocabulary (first id wins on collisions)."""
    family = tokenizer_family(tokenizer)
    usable = usable_token_ids(num_embeddings, tokenizer).tolist()
    keys: dict[tuple[bool, str], int] = {}
    for token_id, piece in zip(usable, tokenizer.convert_ids_to_tokens(usable)):
        key = normalise_piece(piece, family)
        if key is None:
            continue
        if lowercase:
            key = (key[0], key[1].lower())
        keys.setdefault(key, token_id)
    return keys


def shared_tokens(source_tokenizer, source_rows: int, target_tokenizer, target_rows: int, lowercase: bool = False):
    """Aligned anchor ids: (source ids [n], target ids [n], keys) for tokens both vocabularies have."""
    source_keys = vocabulary_keys(source_tokenizer, source_rows, lowercase)
    target_keys = vocabulary_keys(target_tokenizer, target_rows, lowercase)
    keys = sorted(set(source_keys) & set(target_keys))
    source_ids = torch.tensor([source_keys[k] for k in keys], dtype=torch.long)
    target_ids = torch.tensor([target_keys[k] for k in keys], dtype=torch.long)
    return source_ids, target_ids, keys
