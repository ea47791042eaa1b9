"""Fingerprints of texts and writers: exact hash, character shingles, SimHash, and a coarse writing style.

Repetition compares a new text with the author's recent ones (Jaccard of character 5-gram shingles)
and with everyone's (SimHash: 64 bits, stored as four 16-bit bands; two texts within 3 differing bits
share a band, so an indexed equality lookup finds near-duplicates without scanning).
"""

import hashlib
import math
import re
import zlib

import numpy as np

SHINGLE = 5
_MASK64 = (1 << 64) - 1
_WORDS = re.compile(r"[^\W\d_]+", re.UNICODE)


def text_hash(normalized_text: str) -> str:
    return hashlib.blake2b(normalized_text.encode(), digest_size=10).hexdigest()


def shingles(normalized_text: str) -> frozenset[int]:
    text = normalized_text
    if len(text) <= SHINGLE:
        return frozenset({zlib.crc32(text.encode())}) if text else frozenset()
    data = text.encode()
    return frozenset(zlib.crc32(data[i:i + SHINGLE]) for i in range(len(data) - SHINGLE + 1))


def jaccard(a: frozenset[int], b: frozenset[int]) -> float:
    if not a or not b:
        return 0.0
    return len(a & b) / len(a | b)


_BITS = np.arange(64, dtype=np.uint64)


def simhash(tokens: list[str]) -> int:
    """64-bit SimHash over words and word pairs (signed, to fit a BigIntegerField)."""
    if not tokens:
        return 0
    features = tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:], strict=False)]
    hashes = np.fromiter(
        (int.from_bytes(hashlib.blake2b(f.encode(), digest_size=8).digest(), "little") for f in features),
        dtype=np.uint64, count=len(features),
    )
    bits = ((hashes[:, None] >> _BITS) & np.uint64(1)).astype(np.int32)
    votes = (bits * 2 - 1).sum(axis=0)
    value = 0
    for position in np.flatnonzero(votes > 0):
        value |= 1 << int(position)
    return value - (1 << 64) if value >= 1 << 63 else value


def simhash_bands(value: int) -> tuple[int, int, int, int]:
    unsigned = value & _MASK64
    return tuple((unsigned >> (16 * band)) & 0xFFFF for band in range(4))  # type: ignore[return-value]


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & _MASK64).bit_count()


# Writing style: habits that survive a change of name. Each is a rate, quantised so that two texts by
# one hand land close; compared with cosine similarity.
def style_vector(raw: str) -> list[float]:
    if not raw:
        return []
    words = _WORDS.findall(raw)
    n_chars = len(raw)
    n_words = max(len(words), 1)
    letters = sum(ch.isalpha() for ch in raw) or 1
    features = [
        sum(ch.isupper() for ch in raw) / letters,  # shouting or careful capitals
        raw.count("!") / n_chars * 20,
        raw.count("?") / n_chars * 20,
        raw.count("...") / n_chars * 50,
        raw.count(",") / n_words,
        sum(len(w) for w in words) / n_words / 10,  # average word length
        sum(1 for ch in raw if ord(ch) > 0x2100) / n_chars * 20,  # emoji and symbols
        len(re.findall(r"(.)\1\1", raw)) / n_words * 5,  # stretched letters
        len(re.findall(r"\s[,.;:!?]", raw)) / n_words * 5,  # space before punctuation
        len(re.findall(r"[,.;:!?][^\s\d.!?,]", raw)) / n_words * 5,  # no space after punctuation
        1.0 if raw[:1].islower() else 0.0,  # starts without a capital
        1.0 if raw.rstrip()[-1:] not in ".!?)" else 0.0,  # ends without a stop
        sum(1 for ch in raw if ch in "áéíóúñÁÉÍÓÚÑ") / letters * 10,  # writes accents or drops them
        len(re.findall(r"\b(?:jaja|jeje|haha|lol|xd)\w*", raw, re.IGNORECASE)) / n_words * 5,
    ]
    return [round(min(f, 1.0), 2) for f in features]


def style_similarity(a: list[float], b: list[float]) -> float:
    if not a or not b or len(a) != len(b):
        return 0.0
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0
