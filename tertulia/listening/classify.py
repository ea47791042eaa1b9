"""What a post says: language (es/en), sentiment (with a score), intent, and toxicity.

The built-in model is the project's own: hashed features (words, word pairs, character 3- to
5-grams, lexicon polarity with negation, a few marks of the raw text such as ? ¿ !) in 2**18 slots,
and one multinomial logistic regression head per task over that shared vector. Scoring a text is one
gather of its slots and a sum: tens of microseconds on one core. Weights ship in the package
(`model.json`, written by `python -m tertulia.listening.train`); nothing is downloaded at run time.

Toxicity is #4's judgement: the abuse checks of `tertulia.moderation` (insult, personal attack,
rudeness, hate), the strongest score. If the moderation app is not importable it is 0.
"""

import base64
import functools
import re
import zlib
from dataclasses import dataclass
from importlib import resources
from typing import Protocol

import numpy as np
import orjson

from tertulia.listening.lexicon import ENGLISH_ONLY, NEGATORS, SPANISH_LETTERS, SPANISH_ONLY, polarity
from tertulia.listening.matching import normalize
from tertulia.moderation.checks import CheckContext
from tertulia.moderation.classifier import shipped as moderation_model
from tertulia.moderation.classifier import sorted_unique
from tertulia.moderation.items import ContentItem
from tertulia.moderation.lexicon import lexicon

DIM_BITS = 18
DIM = 1 << DIM_BITS
FORMAT = 1

HEADS: dict[str, tuple[str, ...]] = {
    "language": ("es", "en"),
    "sentiment": ("negative", "neutral", "positive"),
    "intent": ("question", "complaint", "purchase_intent", "praise", "other"),
}

_P = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(64 - DIM_BITS)
_CHAR_NS = (3, 4, 5)
_NEGATION_REACH = 3  # words after "no"/"not" read as negated
_WORD = re.compile(r"[#@]?\w+")
_POSITIVE_MARKS = ("❤", "😍", "👏", "👍", "🙌", "😊", "🥰", ":)", ":-)", "☺")
_NEGATIVE_MARKS = ("😡", "😠", "😢", "😞", "👎", "🤬", ":(", ":-(", "😤")
_SHOP_ASK = re.compile(r"\b(?:recomend|recommend|suggest|aconsej|which one|cual me|cuál me|worth it|merece la pena)", re.I)


def _crc(text: str) -> int:
    return zlib.crc32(text.encode()) & (DIM - 1)


def _word_slots(text: str) -> tuple[list[int], str]:
    """Slots of words, word pairs, lexicon polarity and marks; and the words joined for character n-grams."""
    words = _WORD.findall(normalize(text))
    slots = [_crc("w:" + w) for w in words]
    slots.extend(_crc("b:" + a + " " + b) for a, b in zip(words, words[1:], strict=False))
    negated_until = -1
    for index, word in enumerate(words):
        if word in NEGATORS:
            negated_until = index + _NEGATION_REACH
            continue
        sign = polarity(word)
        if sign:
            flipped = index <= negated_until
            slots.append(_crc(f"l:{'n' if flipped else ''}{'pos' if sign > 0 else 'neg'}"))
        elif index <= negated_until:
            slots.append(_crc("n:" + word))
    slots.append(_crc(f"m:len{min(len(words) // 4, 10)}"))
    if "?" in text or "¿" in text:
        slots.append(_crc("m:q"))
        if text.rstrip().endswith("?"):
            slots.append(_crc("m:qend"))
    if "!" in text or "¡" in text:
        slots.append(_crc("m:bang"))
    if any(mark in text for mark in _POSITIVE_MARKS):
        slots.append(_crc("m:emopos"))
    if any(mark in text for mark in _NEGATIVE_MARKS):
        slots.append(_crc("m:emoneg"))
    if _SHOP_ASK.search(text):
        slots.append(_crc("m:ask"))
    return slots, " ".join(words)


def features_many(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Feature slots of many texts at once: (row, slot) pairs, unique per text, sorted by row.

    Character n-grams of all texts are hashed in one vectorised pass over the texts joined by a
    separator; windows that cross a separator are dropped. Same result as features() per text.
    """
    word_rows: list[int] = []
    word_slots: list[int] = []
    pieces = []
    for row, text in enumerate(texts):
        slots, joined = _word_slots(text)
        word_slots.extend(slots)
        word_rows.extend([row] * len(slots))
        pieces.append(" " + joined + " ")
    keys = [np.array(word_rows, dtype=np.int64) << DIM_BITS | np.array(word_slots, dtype=np.int64)]
    big = "\0".join(pieces)
    codes = np.frombuffer(big.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    separators = codes == 0
    row_of = np.cumsum(separators).astype(np.int64)  # which text each position belongs to
    sep_count = np.concatenate([[0], np.cumsum(separators)])
    length = len(codes)
    with np.errstate(over="ignore"):
        for n in _CHAR_NS:
            if length < n:
                break
            h = codes[: length - n + 1].copy()
            for k in range(1, n):
                h = h * _P + codes[k: length - n + 1 + k]
            h = (h + np.uint64(n)) * _MIX
            clean = sep_count[n:] == sep_count[: length - n + 1]  # no separator inside the window
            keys.append(row_of[: length - n + 1][clean] << DIM_BITS | (h[clean] >> _SHIFT).astype(np.int64))
    unique = sorted_unique(np.concatenate(keys))
    return unique >> DIM_BITS, unique & (DIM - 1)


def features(text: str) -> np.ndarray:
    """Sorted unique feature slots of one text (int64)."""
    return features_many([text])[1]


_LANGUAGE_SURE = 0.85


def _language_vote(text: str) -> int | None:
    """Index of es/en by function words and Spanish-only letters; None on a tie."""
    words = _WORD.findall(normalize(text))
    spanish = sum(1 for w in words if w in SPANISH_ONLY) + 2 * any(c in SPANISH_LETTERS for c in text.lower())
    english = sum(1 for w in words if w in ENGLISH_ONLY)
    if spanish == english:
        return None
    return HEADS["language"].index("es" if spanish > english else "en")


@dataclass(frozen=True, slots=True)
class Prediction:
    language: str
    sentiment: str
    sentiment_score: float  # P(positive) - P(negative), -1..1
    intent: str
    toxicity: float = 0.0

    def as_dict(self) -> dict:
        return {"language": self.language, "sentiment": self.sentiment, "sentiment_score": self.sentiment_score,
                "intent": self.intent, "toxicity": self.toxicity}


class Classifier(Protocol):
    """What classify_many needs of a model: the built-in Model, or an optional backend (listening.backends)."""

    def predict(self, text: str) -> Prediction: ...

    def predict_many(self, texts: list[str]) -> list[Prediction]: ...


class Model:
    """All heads over one weight matrix: columns are the heads' classes side by side."""

    def __init__(self, weights: np.ndarray, bias: np.ndarray, info: dict | None = None):
        self.weights = weights.astype(np.float32)  # DIM x sum(classes)
        self.bias = bias.astype(np.float32)
        self.info = info or {}
        self._slices: dict[str, slice] = {}
        start = 0
        for name, labels in HEADS.items():
            self._slices[name] = slice(start, start + len(labels))
            start += len(labels)

    def probabilities(self, slots: np.ndarray) -> dict[str, np.ndarray]:
        z = self.bias.copy()
        if len(slots):
            z += self.weights[slots].sum(axis=0) / np.sqrt(len(slots))
        out = {}
        for name, part in self._slices.items():
            logits = z[part]
            e = np.exp(logits - logits.max())
            out[name] = e / e.sum()
        return out

    def predict(self, text: str) -> Prediction:
        return self.predict_many([text])[0]

    def predict_many(self, texts: list[str]) -> list[Prediction]:
        """predict() for many texts, vectorised: several times faster per text than one by one."""
        if not texts:
            return []
        rows, slots = features_many(texts)
        counts = np.bincount(rows, minlength=len(texts))
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        z = np.zeros((len(texts), len(self.bias)), dtype=np.float32)
        present = counts > 0
        if len(slots):
            sums = np.add.reduceat(self.weights[slots], starts[present])
            z[present] = sums / np.sqrt(counts[present])[:, None]
        z += self.bias
        out: dict[str, np.ndarray] = {}
        for name, part in self._slices.items():
            logits = z[:, part]
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            out[name] = e / e.sum(axis=1, keepdims=True)
        language = out["language"].argmax(axis=1)
        for row in np.flatnonzero(out["language"].max(axis=1) < _LANGUAGE_SURE).tolist():
            vote = _language_vote(texts[row])
            if vote is not None:
                language[row] = vote
        sentiment = out["sentiment"].argmax(axis=1)
        score = out["sentiment"][:, 2] - out["sentiment"][:, 0]
        intent = out["intent"].argmax(axis=1)
        langs, sents, intents = HEADS["language"], HEADS["sentiment"], HEADS["intent"]
        return [Prediction(langs[a], sents[b], round(c, 3), intents[d])
                for a, b, c, d in zip(language.tolist(), sentiment.tolist(), score.tolist(), intent.tolist(), strict=True)]

    def to_json(self) -> bytes:
        nonzero = np.flatnonzero(np.abs(self.weights).max(axis=1) > 0).astype(np.int32)
        deltas = np.diff(nonzero, prepend=0).astype(np.int32)
        return orjson.dumps({
            "format": FORMAT, "dim_bits": DIM_BITS, "heads": HEADS, "bias": self.bias.tolist(),
            "slots": base64.b64encode(zlib.compress(deltas.tobytes(), 9)).decode(),
            "weights": base64.b64encode(zlib.compress(self.weights[nonzero].astype(np.float16).tobytes(), 9)).decode(),
            "info": self.info,
        }, option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes | str) -> "Model":
        payload = orjson.loads(data)
        if payload.get("format") != FORMAT or payload.get("dim_bits") != DIM_BITS:
            raise ValueError("Unsupported listening model format.")
        if {k: tuple(v) for k, v in payload["heads"].items()} != HEADS:
            raise ValueError("The listening model was trained for other labels.")
        width = sum(len(v) for v in HEADS.values())
        slots = np.cumsum(np.frombuffer(zlib.decompress(base64.b64decode(payload["slots"])), dtype=np.int32))
        values = np.frombuffer(zlib.decompress(base64.b64decode(payload["weights"])), dtype=np.float16)
        weights = np.zeros((DIM, width), dtype=np.float32)
        weights[slots] = values.reshape(len(slots), width).astype(np.float32)
        return cls(weights, np.array(payload["bias"], dtype=np.float32), payload.get("info", {}))


@functools.cache
def shipped() -> Model:
    """The model trained by the project and shipped in the package."""
    return Model.from_json(resources.files("tertulia.listening").joinpath("model.json").read_bytes())


_ABUSE = ("insult", "personal_attack", "rudeness", "hate")
_DISGUISE = re.compile(r"[^\W\d_][*$@0-9!]+[^\W\d_]")  # m**rda, m13rd4: worth a full look
_LINKS = re.compile(r"\S*://\S*|www\.\S*|@\w+")  # short links and handles mix letters and digits


@functools.cache
def _moderation():
    """#4's checks restricted to abuse, and the words its lexicon knows."""
    # Imported here: moderation.services loads Django models, and listening.train imports this module
    # without Django set up.
    from tertulia.moderation.services import checks_run

    words = lexicon()
    ordinary = words.common | words.stopwords.get("es", frozenset()) | words.stopwords.get("en", frozenset())
    known = frozenset(folded for w in (*words.known, *words.insult_heads, *words.slurs)
                      if (folded := normalize(w).strip()) and folded not in ordinary and " " not in folded)
    context = CheckContext(toxicity_model=moderation_model("toxicity"), enabled=frozenset(_ABUSE))
    return checks_run, ContentItem, context, known


def toxicity(text: str, *, language: str = "", sentiment: str = "") -> float:
    """0..1: the strongest of moderation's abuse checks.

    The full checks cost about as much as the rest of classification together, so a text whose own
    sentiment is not negative, with no word of moderation's lexicon and nothing that looks like a
    disguised word, is not sent to them and scores 0. Pass sentiment="" to always run them.
    """
    if not text.strip():
        return 0.0
    checks_run, content_item, context, known = _moderation()
    if sentiment and sentiment != "negative" and known.isdisjoint(_WORD.findall(normalize(text))) \
            and not _DISGUISE.search(_LINKS.sub(" ", text)):
        return 0.0
    results = checks_run(content_item(kind="comment", text=text, language=language), context=context)
    return round(max((r.score for r in results if r.code in _ABUSE), default=0.0), 3)


def classify_many(texts: list[str], *, model: Classifier | None = None, with_toxicity: bool = True) -> list[Prediction]:
    """classify() for many texts (what the command and the pipeline use)."""
    predictions = (model or shipped()).predict_many(texts)
    if not with_toxicity:
        return predictions
    return [Prediction(p.language, p.sentiment, p.sentiment_score, p.intent,
                       toxicity(text, language=p.language, sentiment=p.sentiment))
            for text, p in zip(texts, predictions, strict=True)]


def classify(text: str, *, model: Classifier | None = None, with_toxicity: bool = True) -> Prediction:
    """Language, sentiment, intent (and toxicity) of one text."""
    prediction = (model or shipped()).predict(text)
    if not with_toxicity:
        return prediction
    return Prediction(prediction.language, prediction.sentiment, prediction.sentiment_score, prediction.intent,
                      toxicity(text, language=prediction.language, sentiment=prediction.sentiment))
