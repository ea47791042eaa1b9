"""The project's own small text classifiers: hashed n-gram features and logistic regression in numpy.

Features are the words and word pairs of the normalised text, its character 3- to 5-grams (which
survive misspellings and disguises) and a few facts about the raw text (a link, many capitals, a
long number), hashed into 2**18 slots. A model has named heads (e.g. "promotional" and
"off_topic" share one feature vector; "attack" and "rudeness" another), each a weight vector and a
bias. Scoring a text is one gather and a sum per head: tens of microseconds.

Training is full-batch Adam with L2 and balanced classes, deterministic, in a few seconds on a
laptop core. Weights ship in the package as JSON (sparse, float16, base64) and per-store models
live in the database; nothing is downloaded at run time.
"""

import base64
import functools
import re
import zlib
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import orjson

DIM_BITS = 18
DIM = 1 << DIM_BITS
FORMAT = 1

_P = np.uint64(0x100000001B3)
_MIX = np.uint64(0x9E3779B97F4A7C15)
_SHIFT = np.uint64(64 - DIM_BITS)
_CHAR_NS = (3, 4, 5)
_URL = re.compile(r"https?://|www\.|\.(?:com|net|org|es|io|ly|be|co)\b", re.IGNORECASE)
_LONG_NUMBER = re.compile(r"\d[\d\s().-]{6,}\d")
_NO_CAPITALS = {ord(c): None for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZÁÉÍÓÚÑÜÀÈÌÒÙÇ"}


def _crc(text: str) -> int:
    return zlib.crc32(text.encode()) & (DIM - 1)


def sorted_unique(values: np.ndarray) -> np.ndarray:
    """np.unique of a 1-D array, by sorting: NumPy 2's hash-based unique costs several times more on the few
    hundred slots of one text, and this runs for every text judged or classified."""
    if values.size < 2:
        return np.sort(values)
    ordered = np.sort(values)
    keep = np.empty(ordered.size, dtype=bool)
    keep[0] = True
    np.not_equal(ordered[1:], ordered[:-1], out=keep[1:])
    return ordered[keep]


def features(normalized_text: str, tokens: list[str], raw: str) -> np.ndarray:
    """Sorted unique feature slots of one text (int64)."""
    slots: list[int] = [_crc("w:" + t) for t in tokens]
    slots.extend(_crc("b:" + a + " " + b) for a, b in zip(tokens, tokens[1:], strict=False))
    # Facts about the raw text that the normalised form hides (counted by C-level string methods).
    letters = len(normalized_text) - normalized_text.count(" ") or 1
    capitals = (len(raw) - len(raw.translate(_NO_CAPITALS))) / letters
    slots.append(_crc(f"m:len{min(len(tokens) // 5, 12)}"))
    if capitals > 0.5 and letters > 8:
        slots.append(_crc("m:shout"))
    if _URL.search(raw):
        slots.append(_crc("m:url"))
    if _LONG_NUMBER.search(raw):
        slots.append(_crc("m:number"))
    if raw.count("!") >= 3:
        slots.append(_crc("m:bang"))
    words = np.array(slots, dtype=np.int64)
    padded = " " + normalized_text + " "
    codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    parts = [words]
    length = len(codes)
    with np.errstate(over="ignore"):
        for n in _CHAR_NS:
            if length < n:
                break
            h = codes[: length - n + 1].copy()
            for k in range(1, n):
                h = h * _P + codes[k: length - n + 1 + k]
            h = (h + np.uint64(n)) * _MIX
            parts.append((h >> _SHIFT).astype(np.int64))
    return sorted_unique(np.concatenate(parts))


@dataclass(slots=True)
class Head:
    weights: np.ndarray  # float32, DIM
    bias: float


@dataclass(slots=True)
class Classifier:
    name: str
    heads: dict[str, Head]
    info: dict = field(default_factory=dict)  # what it was trained on, held-out figures

    def scores(self, slots: np.ndarray) -> dict[str, float]:
        if len(slots) == 0:
            return {name: 0.0 for name in self.heads}
        scale = 1.0 / np.sqrt(len(slots))
        out = {}
        for name, head in self.heads.items():
            z = float(head.weights[slots].sum()) * scale + head.bias
            out[name] = float(1.0 / (1.0 + np.exp(-z)))
        return out

    def to_json(self) -> bytes:
        heads = {}
        for name, head in self.heads.items():
            nonzero = np.flatnonzero(head.weights).astype(np.int32)
            # Slots as deltas compress far better than absolute positions.
            deltas = np.diff(nonzero, prepend=0).astype(np.int32)
            heads[name] = {
                "bias": float(head.bias),
                "slots": base64.b64encode(zlib.compress(deltas.tobytes(), 9)).decode(),
                "weights": base64.b64encode(zlib.compress(head.weights[nonzero].astype(np.float16).tobytes(), 9)).decode(),
            }
        return orjson.dumps({"format": FORMAT, "name": self.name, "dim_bits": DIM_BITS, "heads": heads, "info": self.info},
                            option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes | str) -> "Classifier":
        payload = orjson.loads(data)
        if payload.get("format") != FORMAT or payload.get("dim_bits") != DIM_BITS:
            raise ValueError("Unsupported classifier format.")
        heads = {}
        for name, head in payload["heads"].items():
            deltas = np.frombuffer(zlib.decompress(base64.b64decode(head["slots"])), dtype=np.int32)
            values = np.frombuffer(zlib.decompress(base64.b64decode(head["weights"])), dtype=np.float16)
            weights = np.zeros(DIM, dtype=np.float32)
            weights[np.cumsum(deltas)] = values.astype(np.float32)
            heads[name] = Head(weights=weights, bias=float(head["bias"]))
        return cls(name=payload["name"], heads=heads, info=payload.get("info", {}))


@dataclass(slots=True)
class Dataset:
    """Texts as feature slots plus 0/1 labels per head (None = this example says nothing about that head)."""

    slots: list[np.ndarray] = field(default_factory=list)
    labels: dict[str, list[float | None]] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)

    def add(self, slots: np.ndarray, labels: dict[str, int | None], weight: float = 1.0) -> None:
        index = len(self.slots)
        self.slots.append(slots)
        self.weights.append(weight)
        for head, value in labels.items():
            column = self.labels.setdefault(head, [None] * index)
            column.append(value)
        for column in self.labels.values():
            if len(column) < index + 1:
                column.append(None)


def train(
    dataset: Dataset, *, name: str, heads: list[str], epochs: int = 250, l2: float = 2e-5, learning_rate: float = 0.05,
    min_df: int = 2, start: "Classifier | None" = None, info: dict | None = None,
) -> Classifier:
    """Fit one logistic regression per head on shared hashed features. Deterministic."""
    counts = np.array([len(s) for s in dataset.slots], dtype=np.int64)
    indices = np.concatenate(dataset.slots) if dataset.slots else np.zeros(0, dtype=np.int64)
    values = np.repeat(1.0 / np.sqrt(np.maximum(counts, 1)), counts)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]) if len(counts) else np.zeros(0, dtype=np.int64)
    # Slots seen in fewer than min_df texts are mostly one-off noise; leaving them out keeps the
    # shipped weights small and the model less prone to memorising single examples.
    document_frequency = np.bincount(indices, minlength=DIM)
    usable = document_frequency >= min_df
    if start is not None:
        for head in start.heads.values():
            usable |= head.weights != 0
    sample_weights = np.array(dataset.weights, dtype=np.float64)
    out: dict[str, Head] = {}
    for head_name in heads:
        raw = dataset.labels.get(head_name, [])
        mask = np.array([v is not None for v in raw] + [False] * (len(counts) - len(raw)))
        y = np.array([v if v is not None else 0.0 for v in raw] + [0.0] * (len(counts) - len(raw)))
        if not mask.any() or y[mask].min() == y[mask].max():
            raise ValueError(f"Head {head_name!r} needs both positive and negative examples.")
        positives = (y == 1) & mask
        negatives = (y == 0) & mask
        # Balanced classes: each side weighs half of the total.
        sw = sample_weights * mask
        sw = np.where(positives, sw * (0.5 / sw[positives].sum()), sw)
        sw = np.where(negatives, sw * (0.5 / sw[negatives].sum()), sw)
        initial = start.heads.get(head_name) if start is not None else None
        w = initial.weights.astype(np.float64).copy() if initial is not None else np.zeros(DIM)
        b = float(initial.bias) if initial is not None else 0.0
        w *= usable
        m_w = np.zeros(DIM)
        v_w = np.zeros(DIM)
        m_b = v_b = 0.0
        beta1, beta2, eps = 0.9, 0.999, 1e-8
        per_value_weight = np.repeat(sw, counts)
        for step in range(1, epochs + 1):
            z = np.add.reduceat(w[indices] * values, starts) + b if len(indices) else np.zeros(len(counts))
            p = 1.0 / (1.0 + np.exp(-z))
            error = p - y
            grad_w = np.bincount(indices, weights=np.repeat(error, counts) * values * per_value_weight, minlength=DIM)
            grad_w = grad_w * usable + l2 * w
            grad_b = float((error * sw).sum())
            m_w = beta1 * m_w + (1 - beta1) * grad_w
            v_w = beta2 * v_w + (1 - beta2) * grad_w * grad_w
            m_b = beta1 * m_b + (1 - beta1) * grad_b
            v_b = beta2 * v_b + (1 - beta2) * grad_b * grad_b
            correction1 = 1 - beta1 ** step
            correction2 = 1 - beta2 ** step
            w -= learning_rate * (m_w / correction1) / (np.sqrt(v_w / correction2) + eps)
            b -= learning_rate * (m_b / correction1) / (np.sqrt(v_b / correction2) + eps)
            w *= usable
        # Tiny weights change no decision and cost bytes in the shipped file.
        w[np.abs(w) < 1e-3] = 0.0
        out[head_name] = Head(weights=w.astype(np.float32), bias=b)
    return Classifier(name=name, heads=out, info=info or {})


@functools.cache
def shipped(name: str) -> Classifier | None:
    """The classifier trained by the project and shipped in the package (None if it was never trained)."""
    path = resources.files("tertulia.moderation.classifiers").joinpath(f"{name}.json")
    if not path.is_file():
        return None
    return Classifier.from_json(path.read_bytes())
